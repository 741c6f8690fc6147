"""Per-worker memory limits: parsing "2GiB", and reading a process's resident memory."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from ._worker.process_tree import psutil_or_none

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def parse_size(value: object, parameter: str = "memory_limit") -> int:
    """Bytes from an int or a string like "512MB", "2GiB", "1.5 GB"."""
    if isinstance(value, bool):
        raise TypeError(f"{parameter} must be a size like '2GiB' or a number of bytes")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(
                f"{parameter}={value!r} is not a size: write a number of bytes or a number "
                "with a unit, e.g. '512MB', '2GiB' (B, KB, MB, GB, TB; KiB, MiB, GiB, TiB)"
            )
        size = int(float(match.group(1)) * _UNITS[unit])
    else:
        raise TypeError(
            f"{parameter} must be a size like '2GiB' or a number of bytes, got {value!r}"
        )
    if size <= 0:
        raise ValueError(f"{parameter} must be more than 0 bytes, got {value!r}")
    return size


def resident_bytes(pid: int) -> int | None:
    """The resident memory (RSS) of process ``pid``, or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    return _with_psutil(pid, lambda process: process.memory_info().rss)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """The CPU time (user and system) process ``pid`` has used, or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()  # (its name may hold spaces)
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime and stime
    except (OSError, ValueError, IndexError):
        pass
    psutil = psutil_or_none()
    if psutil is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except Exception:
        return None


def private_bytes(pid: int) -> int | None:
    """The memory process ``pid`` has to itself (USS), or None if it cannot be read.

    A forked process shares its parent's pages until it writes to them; its
    RSS counts them all, its private memory only what it added or changed.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            lines = rollup.read().splitlines()
    except OSError:
        lines = []
    if lines:
        private = (b"Private_Clean:", b"Private_Dirty:")
        return sum(int(line.split()[1]) for line in lines if line.startswith(private)) * 1024
    return _with_psutil(pid, lambda process: process.memory_full_info().uss)


def _with_psutil(pid: int, read: Callable[[Any], int]) -> int | None:
    """A size read with psutil, where /proc is missing; None without psutil."""
    psutil = psutil_or_none()
    if psutil is None:
        return None
    try:
        return int(read(psutil.Process(pid)))
    except Exception:
        return None


def describe(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"
