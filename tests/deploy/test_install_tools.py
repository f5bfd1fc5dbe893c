"""tests/install-tools.sh (issue 26, item 5): says what it installs, and the Prometheus server
that comes with promtool's package is neither started during the install nor left enabled.
Run with stand-ins for `id`, `apt-get` and `systemctl` that record what they were asked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO


def stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def test_promtool_is_installed_without_leaving_a_server_running_or_enabled(tmp_path: Path) -> None:
    bin_dir, log, policy = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "policy-rc.d"
    bin_dir.mkdir()
    for tool in ("chmod", "rm", "printf"):
        found = shutil.which(tool)
        assert found is not None
        os.symlink(found, bin_dir / tool)
    stub(bin_dir, "id", "echo 0")
    # at install time, record whether policy-rc.d refuses service starts (101)
    stub(bin_dir, "apt-get", f'echo "apt-get $*" >>{log}\n'
         f'if [ "$1" = install ]; then "{policy}" prometheus start; echo "policy $?" >>{log}; fi')
    stub(bin_dir, "systemctl", f'echo "systemctl $*" >>{log}')
    done = subprocess.run(
        ["/bin/bash", str(REPO / "tests" / "install-tools.sh")], capture_output=True, text=True,
        cwd=REPO, timeout=60,
        env={"PATH": str(bin_dir), "POLICY_RC_D": str(policy), "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert "installing Debian packages: haproxy prometheus systemd" in done.stderr
    calls = log.read_text().splitlines()
    install = next(call for call in calls if call.startswith("apt-get install"))
    assert "prometheus" in install and "--no-install-recommends" in install
    assert "policy 101" in calls  # no service started while installing
    assert "systemctl disable prometheus.service" in calls
    assert not policy.exists()  # put back as it was


def test_nothing_is_installed_as_another_user(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "id", "echo 1000")
    stub(bin_dir, "apt-get", "exit 99")
    done = subprocess.run(["/bin/bash", str(REPO / "tests" / "install-tools.sh")],
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={"PATH": str(bin_dir)})
    assert done.returncode == 0 and done.stderr == ""
