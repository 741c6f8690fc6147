"""``python -m makeparallel doctor``: what makeparallel sees on this machine."""

from __future__ import annotations

import os
import platform
import sys
import time

from . import __version__, api
from ._sizing import usable_cpus
from .backends import gil_enabled, resolve_kind


def _echo(x: int) -> int:
    return x


def run() -> int:
    import cloudpickle  # type: ignore[import-untyped]

    print(f"makeparallel {__version__}")
    print(f"python       {platform.python_implementation()} {sys.version.split()[0]}")
    print(f"executable   {sys.executable}")
    print(f"GIL          {'enabled' if gil_enabled() else 'disabled (free-threaded build)'}")
    print(f"cpu_count    {os.cpu_count()} (machine)")
    print(f"usable CPUs  {usable_cpus()} (affinity and cgroup quota)")
    print(f"auto engine  {resolve_kind('auto')}")
    print(f"cloudpickle  {cloudpickle.__version__}")
    started = time.perf_counter()
    pool = api.default_pool()
    ok = pool.submit(_echo, 42).result(timeout=60) == 42
    print(f"smoke test   {'ok' if ok else 'FAILED'} ({time.perf_counter() - started:.2f} s)")
    return 0 if ok else 1
