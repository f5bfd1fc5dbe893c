"""How many CPUs this process may use: what `service.workers = auto` counts.

The host's core count (`os.cpu_count()`) is the wrong answer in a container: a pod limited to
two CPUs on a 64-core node would start 63 workers that the kernel's CFS quota then throttles in
turn, and a process pinned with `taskset` or a cpuset would do the same. The usable count is the
smallest of three limits:

- the affinity mask (`sched_getaffinity`: `taskset`, cpusets, Kubernetes' static CPU manager);
- the cgroup v2 quota of the process's cgroup and every ancestor (`cpu.max`, `QUOTA PERIOD`,
  or `max`);
- the cgroup v1 CFS quota (`cpu.cfs_quota_us` / `cpu.cfs_period_us`, `-1` for none).

A fractional quota (`1.5` CPUs) rounds up: a worker that gets half a core still helps. The
`root` argument lets the tests read a fixture tree instead of this machine's `/proc` and `/sys`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def usable_cpus(root: Path = Path("/")) -> int:
    """The CPUs this process may use: affinity and cgroup quota (v2 or v1), at least 1."""
    limits = [_affinity()]
    quota = cgroup_quota(root)
    if quota is not None:
        limits.append(max(1, math.ceil(quota)))
    return max(1, min(limits))


def cgroup_quota(root: Path = Path("/")) -> float | None:
    """The tightest CPU quota over this process's cgroup and its ancestors, in CPUs; None: none."""
    quotas: list[float] = []
    for line in _read(root / "proc/self/cgroup").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            quotas += _v2_quotas(root / "sys/fs/cgroup", path)
        elif "cpu" in controllers.split(","):
            quotas += _v1_quotas(root / "sys/fs/cgroup", controllers, path)
    return min(quotas) if quotas else None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _v2_quotas(mount: Path, path: str) -> list[float]:
    """`cpu.max` of the cgroup and every ancestor up to the mount (a limit anywhere above
    binds too; inside a container's namespace the path is usually `/`)."""
    quotas = []
    for directory in _ancestors(mount, path):
        fields = _read(directory / "cpu.max").split()
        if len(fields) == 2 and fields[0] != "max":
            quota = _ratio(fields[0], fields[1])
            if quota is not None:
                quotas.append(quota)
    return quotas


def _v1_quotas(mount: Path, controllers: str, path: str) -> list[float]:
    quotas = []
    # The cpu controller is mounted as `cpu,cpuacct`, `cpu` or `cpuacct,cpu` depending on the
    # distribution; the first that exists is it.
    names = [controllers, "cpu,cpuacct", "cpu", "cpuacct,cpu"]
    mounts = [mount / name for name in names if (mount / name).is_dir()]
    for directory in _ancestors(mounts[0], path) if mounts else []:
        quota = _ratio(_read(directory / "cpu.cfs_quota_us").strip(),
                       _read(directory / "cpu.cfs_period_us").strip())
        if quota is not None:
            quotas.append(quota)
    return quotas


def _ancestors(mount: Path, path: str) -> list[Path]:
    parts = [p for p in path.split("/") if p]
    return [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # absent (no cgroup, other version) or unreadable: no limit from it
        return ""
