#!/usr/bin/env bash
# The Debian packages the tests use, installed as root (tests/run.sh calls this; another user
# cannot, and the tests needing a missing program skip and name its package):
#   haproxy        the real HAProxy the haproxy/ configurations are tested with
#   prometheus     only for its `promtool` (checks the metrics exposition and the alert rules);
#                  the Prometheus server the package brings is neither started nor left
#                  enabled: a test run must not leave a server on port 9090
#   systemd        for `systemd-analyze verify` of the unit file
#   python3-venv   pip inside virtual environments
# It says what it installs before doing so; nothing is installed when every program is there.
set -euo pipefail
[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || exit 0

missing=""
command -v haproxy >/dev/null || missing="$missing haproxy"
command -v promtool >/dev/null || missing="$missing prometheus"
command -v systemd-analyze >/dev/null || missing="$missing systemd"
# venv's pip (deploy/venv.sh would install it too; one apt-get run for everything)
"${PYTHON:-python3}" -c 'import ensurepip' 2>/dev/null || missing="$missing python3-venv"
[ -n "$missing" ] || exit 0

echo "tests/install-tools.sh: installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d answering 101 keeps the packages' services from starting during the install
# (Debian's documented switch for it); one already there is left alone.
policy=${POLICY_RC_D:-/usr/sbin/policy-rc.d}
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
case " $missing " in
*" prometheus "*)
    # The package enables its unit for the next boot: undo that (and stop it where systemd
    # runs, should it have started anyway).
    if command -v systemctl >/dev/null; then
        systemctl disable prometheus.service >/dev/null 2>&1 || true
        if [ -d /run/systemd/system ]; then systemctl stop prometheus.service >/dev/null 2>&1 || true; fi
    fi
    echo "tests/install-tools.sh: promtool installed; the prometheus service is stopped and disabled" >&2
    ;;
esac
