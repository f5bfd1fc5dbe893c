#!/usr/bin/env bash
# Makes a Python virtual environment with pip in DIR, then pip-installs the arguments into it:
#
#   bash deploy/venv.sh DIR [PIP INSTALL ARGUMENTS...]      e.g.  bash deploy/venv.sh .venv .
#
# For Debian 12 and Ubuntu 24.04, whose own Python refuses `pip install` outside a virtual
# environment (PEP 668) and ships the venv module without pip unless the package python3-venv
# is installed: as root this installs python3-venv with apt-get; as another user it makes the
# environment without pip and installs pip from pip's own wheel on PyPI (or $PIP_INDEX_URL).
# An environment already in DIR is reused. pip is upgraded to 25.1 or later, which reads
# PEP 735 dependency groups (`--group dev`). PYTHON names the interpreter (default python3).
set -euo pipefail
venv=${1:?usage: bash deploy/venv.sh DIR [PIP INSTALL ARGUMENTS...]}
shift
python=${PYTHON:-python3}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "deploy/venv.sh: haproxy-receiver needs Python 3.11 or later as $python (set PYTHON=...)" >&2
    exit 1
fi

has_ensurepip() { "$python" -c 'import ensurepip' 2>/dev/null; }

if [ ! -x "$venv/bin/python" ]; then
    if ! has_ensurepip && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    if has_ensurepip; then
        "$python" -m venv "$venv"
    else
        "$python" -m venv --without-pip "$venv"
        # pip from its wheel: a wheel is a zip that Python can run (`python pip.whl/pip`).
        if ! "$venv/bin/python" - <<'EOF'
import hashlib, os, re, subprocess, sys, tempfile, urllib.parse, urllib.request

index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/") + "/pip/"
with urllib.request.urlopen(index, timeout=60) as answer:
    page = answer.read().decode()
found = {}
for href in re.findall(r'href="([^"]+)"', page):
    name = urllib.parse.urlsplit(href).path.rsplit("/", 1)[-1]
    match = re.fullmatch(r"pip-(\d+(?:\.\d+)*)-py3-none-any\.whl", name)
    if match:
        found[tuple(map(int, match[1].split(".")))] = (urllib.parse.urljoin(index, href), name)
url, name = found[max(found)]
with tempfile.TemporaryDirectory() as folder:
    wheel = os.path.join(folder, name)
    with urllib.request.urlopen(url, timeout=120) as answer, open(wheel, "wb") as out:
        data = answer.read()
        out.write(data)
    digest = urllib.parse.urlsplit(url).fragment.partition("sha256=")[2]
    if digest and hashlib.sha256(data).hexdigest() != digest:
        sys.exit(f"{name}: sha256 differs from the index's")
    subprocess.run([sys.executable, os.path.join(wheel, "pip"), "install", "-q", "--no-index",
                    "--disable-pip-version-check", wheel], check=True)
EOF
        then
            rm -rf "$venv"
            echo "deploy/venv.sh: $python has no pip for virtual environments and pip could not be" \
                 "fetched from PyPI: install the package python3-venv as root (apt-get install" \
                 "python3-venv), then run this again" >&2
            exit 1
        fi
    fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade 'pip>=25.1'
if [ $# -gt 0 ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
fi
