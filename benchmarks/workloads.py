"""Workload functions for the benchmarks.

They live in their own module (not in ``run.py``) so that every worker
process, whatever library started it, can import them by name. This module
must import nothing but the standard library: the makeparallel 0.2.0 child
script imports it from a separate virtualenv.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_MODULUS = 1_000_003


def spin(n: int) -> int:
    """Pure-Python integer arithmetic: ``n`` loop turns, holding the GIL throughout."""
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % _MODULUS
    return acc


def spin_timed(n: int) -> tuple[int, float]:
    """``spin(n)`` and the CPU seconds it took, as ``(result, cpu_seconds)``.

    The CPU time is this thread's (``time.thread_time``), read inside the task,
    so it is measured in whichever process and thread ran the task, and counts
    only the time that thread was actually running (not time spent waiting for
    a CPU or for the GIL). The benchmark divides the sum over a run's tasks by
    the run's wall time: work done per wall second.
    """
    start = time.thread_time()
    result = spin(n)
    return result, time.thread_time() - start


def nap(seconds: float) -> float:
    """A trivial task that sleeps, used to warm up pools.

    One per worker, submitted together: because each one keeps its worker
    busy for a moment, a pool that starts workers on demand starts all of them.
    """
    time.sleep(seconds)
    return seconds


def time_call(fn: Callable[[int], object], arg: int) -> float:
    """Seconds one ``fn(arg)`` call takes here."""
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def calibrate(target_seconds: float) -> int:
    """A loop count for which ``spin`` takes about ``target_seconds`` in this process."""
    n = 1_000
    # Grow until one call is long enough to time reliably, then scale linearly.
    while True:
        elapsed = time_call(spin, n)
        if elapsed >= min(0.02, target_seconds / 2):
            break
        n *= 2
    n = max(1, round(n * target_seconds / elapsed))
    # One refinement from the best of three runs at the estimated size.
    elapsed = min(time_call(spin, n) for _ in range(3))
    return max(1, round(n * target_seconds / elapsed))
