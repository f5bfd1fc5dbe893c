#!/usr/bin/env bash
# The whole check, as CI runs it (.ci/run) and README's quick start shows it: on a bare
# Debian/Ubuntu machine, installs what the tests need, then runs ruff, mypy and the suite.
#
#   bash tests/run.sh [PYTEST ARGUMENTS...]
#
# As root it installs the Debian packages the tests use (haproxy; prometheus for promtool;
# systemd for systemd-analyze; python3-venv). Another user cannot: tests that need a missing
# program skip and name its package. Python packages go into a virtual environment, never into
# the system's Python (which PEP 668 protects on Debian 12 and Ubuntu 24.04): the active one
# ($VIRTUAL_ENV), else .venv in the checkout, made by deploy/venv.sh (which copes without
# python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    command -v haproxy >/dev/null || missing="$missing haproxy"
    command -v promtool >/dev/null || missing="$missing prometheus"
    command -v systemd-analyze >/dev/null || missing="$missing systemd"
    # venv's pip (deploy/venv.sh would install it too; one apt-get run for everything)
    "${PYTHON:-python3}" -c 'import ensurepip' 2>/dev/null || missing="$missing python3-venv"
    if [ -n "$missing" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
fi
export PATH="$PATH:/usr/sbin:/sbin"  # haproxy is in /usr/sbin, outside a normal user's PATH

venv=${VIRTUAL_ENV:-.venv}
# The package with its test and geoip extras (editable), and the `dev` dependency group:
# linters, type stubs, and the packaging and deployment checkers.
bash deploy/venv.sh "$venv" -e '.[test,geoip,kafka]' --group dev
"$venv/bin/python" -m ruff check .
"$venv/bin/python" -m mypy
"$venv/bin/python" -m pytest -q "$@"
