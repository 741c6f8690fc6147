"""Time the CPU workload with makeparallel 0.2.0 (the Rust/threads release).

Run by ``run.py`` with the Python of a separate virtualenv that has
``makeparallel==0.2.0`` installed; never imported by the current project.
Usage: ``python mp020_child.py LOOP_COUNT TASKS REPETITIONS``. Prints one JSON
object on stdout: the package version and, per API, the wall seconds of each
repetition ("samples") and the CPU seconds each task used, per repetition
("task_cpu", from ``workloads.spin_timed``: ``time.thread_time`` read inside
the task, so with 0.2.0's threads it counts only the time each task's thread
actually ran). A serial loop is timed too, as a sanity check of the interpreter.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import makeparallel as old_mp  # the 0.2.0 release, from the separate virtualenv
from workloads import nap, spin, spin_timed


def _repeat(
    run: Callable[[], list[Any]], expected: list[int], repetitions: int
) -> tuple[list[float], list[list[float]]]:
    """Wall seconds of each repetition, and the CPU seconds of each task per repetition."""
    samples: list[float] = []
    task_cpu: list[list[float]] = []
    for _ in range(repetitions):
        start = time.perf_counter()
        results = run()
        samples.append(time.perf_counter() - start)
        pairs = [tuple(pair) for pair in results]
        if [pair[0] for pair in pairs] != expected or any(len(pair) != 2 for pair in pairs):
            raise RuntimeError(f"wrong results: {results!r}, expected values {expected!r}")
        task_cpu.append([float(pair[1]) for pair in pairs])
    return samples, task_cpu


def main(argv: list[str]) -> None:
    n, tasks, repetitions = (int(a) for a in argv[1:4])
    expected = [spin(n)] * tasks
    decorated_spin = old_mp.parallel(spin_timed)
    decorated_nap = old_mp.parallel(nap)
    for handle in [decorated_nap(0.05) for _ in range(4)]:  # start its threads before timing
        handle.get()

    def serial() -> list[Any]:
        return [spin_timed(n) for _ in range(tasks)]

    def decorator() -> list[Any]:
        handles = [decorated_spin(n) for _ in range(tasks)]
        return [h.get() for h in handles]

    def mapped() -> list[Any]:
        return list(old_mp.parallel_map(spin_timed, [n] * tasks))

    measured = {
        "serial": _repeat(serial, expected, repetitions),
        "parallel": _repeat(decorator, expected, repetitions),
        "parallel_map": _repeat(mapped, expected, repetitions),
    }
    report = {
        "version": version("makeparallel"),
        "python": sys.version.split()[0],
        "samples": {api: wall for api, (wall, _) in measured.items()},
        "task_cpu": {api: cpu for api, (_, cpu) in measured.items()},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv)
