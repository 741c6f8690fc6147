"""How many CPUs this process may really use.

``os.cpu_count()`` counts the machine's CPUs; a container or a ``taskset``
may allow far fewer. We take the smallest of the affinity mask and the cgroup
CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), rounded up, at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(_CGROUP_ROOT)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs allowed by the cgroup quota under ``root``, or None when unlimited or unknown."""
    for path in _cgroup_dirs(root):
        v2 = path / "cpu.max"
        if v2.is_file():
            parsed = _parse_cpu_max(v2.read_text())
            if parsed is not None:
                return parsed
        v1_quota, v1_period = path / "cpu.cfs_quota_us", path / "cpu.cfs_period_us"
        if v1_quota.is_file() and v1_period.is_file():
            try:
                quota, period = int(v1_quota.read_text()), int(v1_period.read_text())
            except ValueError:
                continue
            if quota > 0 and period > 0:
                return quota / period
    return None


def _parse_cpu_max(text: str) -> float | None:
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _cgroup_dirs(root: Path) -> list[Path]:
    """This process's own cgroup directory (and its cpu controller's, on v1), then the root."""
    dirs: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, relative = parts[1], parts[2].lstrip("/")
        if controllers == "":
            dirs.append(root / relative)
        elif "cpu" in controllers.split(","):
            for name in ("cpu,cpuacct", "cpu"):
                dirs.append(root / name / relative)
    dirs.append(root)
    return dirs
