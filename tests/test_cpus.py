"""`service.workers = auto` counts the CPUs the process may use: cgroup quota and affinity.

The cgroup files are fixture trees written the way the kernel lays them out (cgroup v2
`cpu.max`; v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`, `/proc/self/cgroup` lines as in
Documentation/admin-guide/cgroup-v1 and cgroup-v2.rst), read through `root`.
"""

from __future__ import annotations

import os
from pathlib import Path

from receiver import config
from receiver.cpus import cgroup_quota, usable_cpus


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_v2_quota_in_a_container_namespace(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "200000 100000\n"})
    assert cgroup_quota(root) == 2.0


def test_v2_quota_of_an_ancestor_binds(tmp_path: Path) -> None:
    # A pod's limit is on the pod's cgroup; the container's own says `max`.
    root = _tree(tmp_path, {
        "proc/self/cgroup": "0::/kubepods/pod1/c1\n",
        "sys/fs/cgroup/kubepods/pod1/cpu.max": "150000 100000\n",
        "sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "max 100000\n",
    })
    assert cgroup_quota(root) == 1.5
    assert usable_cpus(root) == min(2, len(os.sched_getaffinity(0)))  # 1.5 rounds up


def test_v2_without_a_limit(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/self/cgroup": "0::/user.slice\n",
                            "sys/fs/cgroup/user.slice/cpu.max": "max 100000\n"})
    assert cgroup_quota(root) is None
    assert usable_cpus(root) == len(os.sched_getaffinity(0))


def test_v1_cfs_quota(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "proc/self/cgroup": "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
        "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_quota(root) == 0.5
    assert usable_cpus(root) == 1


def test_v1_unlimited_and_no_cgroup_files(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "proc/self/cgroup": "4:cpu,cpuacct:/\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_quota(root) is None
    assert cgroup_quota(tmp_path / "nowhere") is None


def test_auto_workers_follow_the_affinity_mask() -> None:
    """The real process, pinned to one CPU (as `taskset -c 0` would): `auto` is 1 worker,
    whatever the host has."""
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert usable_cpus() == 1
        settings = config.load_settings(overrides={"service.workers": "auto"}, env={})
        assert settings.service.workers == 1
    finally:
        os.sched_setaffinity(0, before)

