"""The systemd unit for the per-host role: `systemd-analyze verify` accepts it without a
warning (also with its optional credential lines turned on), it keeps the hardening and spool
directory the README promises, and its notify, reload and watchdog settings match what the
receiver does (receiver/systemd.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from receiver.systemd import MIN_SILENCE

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "haproxy-receiver.service"
INSTALLED_BINARY = "/opt/haproxy-receiver/bin/haproxy-receiver"


def service_section() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if section == "Service":
            values.setdefault(key, []).append(value)
    return values


CREDENTIAL_LINES = ("#LoadCredential=", "#Environment=HAPROXY_RECEIVER_ELASTICSEARCH__PASSWORD_FILE=")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("credentials", [False, True], ids=["as-shipped", "with-credentials"])
def test_systemd_analyze_verify_reports_nothing(tmp_path: Path, credentials: bool) -> None:
    # The binary path is the install's (a venv under /opt); stand in an executable that exists.
    text = UNIT.read_text()
    assert INSTALLED_BINARY in text
    if credentials:
        for line in CREDENTIAL_LINES:
            assert line in text
            text = text.replace(line, line.removeprefix("#"))
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_BINARY, shutil.which("true") or "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False)
    # Unknown or misspelt keys are only warnings (exit 0), so any output is a failure.
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr)


def test_unit_is_hardened_and_keeps_the_spool_in_its_state_directory() -> None:
    service = service_section()
    single = {key: values[-1] for key, values in service.items()}
    assert single["DynamicUser"] == "yes"
    assert single["StateDirectory"] == "haproxy-receiver"
    assert single["Environment"] == "HAPROXY_RECEIVER_SPOOL__DIR=/var/lib/haproxy-receiver/spool"
    assert single["ProtectSystem"] == "strict"
    assert single["Restart"] == "on-failure"
    assert single["NoNewPrivileges"] == "yes"
    assert single["CapabilityBoundingSet"] == ""
    # Stop timeout leaves room for the receiver's shutdown_grace (10 s default) to ship.
    assert float(single["TimeoutStopSec"].removesuffix("s")) > 10
    assert single["ExecStart"].split()[1:3] == ["run", "--config"]


def test_unit_waits_for_readiness_reloads_with_sighup_and_has_a_watchdog() -> None:
    single = {key: values[-1] for key, values in service_section().items()}
    # Type=notify-reload needs systemd 253; Debian 12 ships 252, which refuses it.
    assert single["Type"] == "notify"
    assert single["NotifyAccess"] == "main"  # the ship process inherits NOTIFY_SOCKET
    assert single["ExecReload"] == "/bin/kill -HUP $MAINPID"
    watchdog = float(single["WatchdogSec"].removesuffix("s"))
    # Heartbeats count as wedged after max(WatchdogSec / 2, MIN_SILENCE) of silence; pings come
    # every WatchdogSec / 2, so a wedge is noticed well before systemd's own deadline.
    assert watchdog / 2 >= MIN_SILENCE
    assert single["Restart"] == "on-failure"  # a watchdog kill (SIGABRT) is a failure
