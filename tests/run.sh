#!/usr/bin/env bash
# Installs everything the test suite needs on a bare Debian machine, then runs the linters and
# the whole suite. README's quick start and .ci/run both call this one script.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    missing=""
    command -v haproxy >/dev/null || missing="$missing haproxy"
    command -v promtool >/dev/null || missing="$missing prometheus"
    command -v systemd-analyze >/dev/null || missing="$missing systemd"
    if [ -n "$missing" ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
fi
export PATH="$PATH:/usr/sbin:/sbin"

python3 -m pip install -q --disable-pip-version-check -e '.[test,geoip]'
python3 -m ruff check .
python3 -m mypy
python3 -m pytest -q "$@"
