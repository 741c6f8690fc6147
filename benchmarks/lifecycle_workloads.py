"""Functions the lifecycle benchmark runs in worker processes."""

from __future__ import annotations

import time

import makeparallel as mp


def noop() -> None:
    return None


def hang() -> None:
    while True:
        time.sleep(0.001)


def step(i: int) -> int:
    """About 10 microseconds of pure-Python work: one step of a 1-second task."""
    total = 0
    for j in range(240):
        total += (i ^ j) % 7
    return total


def loop_with_progress(steps: int, report: bool) -> float:
    """``steps`` steps, reporting progress after each when asked; returns the time taken,
    measured inside the worker."""
    started = time.perf_counter()
    for i in range(steps):
        step(i)
        if report:
            mp.report_progress(i + 1, steps)
    return time.perf_counter() - started


def echo(x: int) -> int:
    return x
