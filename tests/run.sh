#!/usr/bin/env bash
# The whole check, as CI runs it (.ci/run) and README's quick start shows it: on a bare
# Debian/Ubuntu machine, installs what the tests need, then runs ruff, mypy and the suite.
#
#   bash tests/run.sh [PYTEST ARGUMENTS...]
#
# As root it installs the Debian packages the tests use (tests/install-tools.sh: haproxy;
# prometheus for promtool, its server left stopped and disabled; systemd for systemd-analyze;
# python3-venv), saying which. Another user cannot: tests that need a missing program skip and
# name its package. Python packages go into a virtual environment, never into
# the system's Python (which PEP 668 protects on Debian 12 and Ubuntu 24.04): the active one
# ($VIRTUAL_ENV), else .venv in the checkout, made by deploy/venv.sh (which copes without
# python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install-tools.sh
export PATH="$PATH:/usr/sbin:/sbin"  # haproxy is in /usr/sbin, outside a normal user's PATH

venv=${VIRTUAL_ENV:-.venv}
# The package with its test and geoip extras (editable), and the `dev` dependency group:
# linters, type stubs, and the packaging and deployment checkers.
echo "tests/run.sh: installing into $venv: this checkout (editable) with its test, geoip and kafka extras, and the dev group" >&2
bash deploy/venv.sh "$venv" -e '.[test,geoip,kafka]' --group dev
"$venv/bin/python" -m ruff check .
"$venv/bin/python" -m mypy
"$venv/bin/python" -m pytest -q "$@"
