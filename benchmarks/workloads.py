"""Workload functions for the benchmarks.

They live in their own module (not in ``run.py``) so that every worker
process, whatever library started it, can import them by name. This module
must import nothing but the standard library: the makeparallel 0.2.0 child
script imports it from a separate virtualenv.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence

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


def noop() -> None:
    """Nothing at all: what a pool costs per task, and nothing else."""


def echo(x: int) -> int:
    """The smallest task with an argument and a result: a round trip."""
    return x


def add_one(x: int) -> int:
    """A tiny item of a big map: far less work than sending it to another process."""
    return x + 1


def sleep_for(seconds: float) -> float:
    """An I/O-bound task: waits without using the CPU, and without the GIL."""
    time.sleep(seconds)
    return seconds


def probe(payload: Sequence[float]) -> tuple[int, float]:
    """A large argument's length and the sum of three of its elements: a small result.

    Works on ``bytes`` and on NumPy arrays alike, without importing NumPy here.
    """
    n = len(payload)
    return n, float(payload[0]) + float(payload[n // 2]) + float(payload[-1])


def compile_file(path: str) -> int:
    """Read one Python source file and compile it; 1 if it compiled, 0 if it is not valid.

    The standard library ships a few files that are deliberately invalid (test
    data), and some that warn when compiled: both are part of the workload.
    """
    with open(path, "rb") as source_file:
        source = source_file.read()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(source, path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            return 0
    return 1


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
