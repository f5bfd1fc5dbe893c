"""Checks on a haproxy-receiver installed from a wheel, away from the checkout: the image's
build (test_dockerfile.py) and the quick start (test_wheel.py) both use them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from receiver.assets import KINDS, haproxy_configs
from tests.support import REPO

ASSETS = REPO / "receiver" / "assets"


def fresh_venv(folder: Path) -> Path:
    """A virtual environment without pip (the running pip installs into it with `--python`, so
    this works where Debian's Python lacks ensurepip); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder / "bin" / "python"


def pip_into(python: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                           "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def assert_exports_every_asset(program: Path, cwd: Path) -> None:
    """`program export` writes each deployment file exactly as the repository holds it: the
    wheel carried every one (a COPY or package-data pattern that missed a file fails here)."""
    def export(*args: str) -> bytes:
        done = subprocess.run([str(program), "export", *args], cwd=cwd, capture_output=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout

    for kind in KINDS.values():
        if kind.name in ("index-template", "haproxy-config", "config"):
            continue
        assert export(kind.name) == (ASSETS / kind.path).read_bytes(), kind.name
    folder = ASSETS / KINDS["haproxy-config"].path
    names = haproxy_configs()
    assert len(names) == len(list(folder.glob("*.cfg"))) >= 9
    for name in names:
        assert export("haproxy-config", "--name", name) == (folder / f"{name}.cfg").read_bytes()
    assert export("haproxy-config", "--name", "README") == (folder / "README.md").read_bytes()
    here = subprocess.run([sys.executable, "-m", "receiver", "export", "index-template"], cwd=REPO,
                          capture_output=True, timeout=60, check=True)
    assert export("index-template") == here.stdout
    here = subprocess.run([sys.executable, "-m", "receiver", "export", "config"], cwd=REPO,
                          capture_output=True, timeout=60, check=True)
    assert export("config") == here.stdout
