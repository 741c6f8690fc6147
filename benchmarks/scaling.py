"""CPU-bound speed-up over the number of workers: 1, 2, 4 (and the cores there are).

    python benchmarks/scaling.py [--quick | --smoke] [--out FILE]

16 tasks of about 0.1 s of pure-Python arithmetic (``workloads.spin_timed``,
calibrated at the start) on warm pools of 1, 2 and 4 workers, makeparallel
against ``ProcessPoolExecutor``, next to a plain loop in this process. The
speed-up can only grow up to the number of cores: beyond it, more workers
share the same cores. Two figures per row: the raw ratio to the serial
loop, and work/wall, the tasks' own CPU seconds (read inside each task) per
wall second, which cannot exceed the number of busy cores and does not
depend on how fast one process runs the loop compared with another.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
import workloads
from machine import usable_cpus
from measure import Contender, Measure, run_rounds
from report import Section, add_ratio, main_for, median_of, rounds, table

NAME = "scaling"
TASKS = {"full": 16, "quick": 16, "smoke": 4}
TASK_SECONDS = {"full": 0.1, "quick": 0.05, "smoke": 0.002}
WORKER_COUNTS = (1, 2, 4)
SERIES = (peers.PROCESS_POOL_EXECUTOR, peers.MAKEPARALLEL)


def _timed_spins(run: Any, loops: int, tasks: int) -> dict[str, float]:
    """Wall seconds of one batch of spins, and its work/wall (the tasks' CPU seconds per second)."""
    started = time.perf_counter()
    results = run()
    wall = time.perf_counter() - started
    expected = workloads.spin(loops)
    if len(results) != tasks or any(value != expected for value, _ in results):
        raise RuntimeError(f"wrong results: {results!r}")
    return {"seconds": wall, "work_wall": sum(cpu for _, cpu in results) / wall}


@contextlib.contextmanager
def serial(loops: int, tasks: int) -> Iterator[Measure]:
    yield lambda: _timed_spins(
        lambda: [workloads.spin_timed(loops) for _ in range(tasks)], loops, tasks
    )


@contextlib.contextmanager
def pool_of(peer: peers.Peer, workers: int, loops: int, tasks: int) -> Iterator[Measure]:
    with peers.warm_pool(peer, workers) as pool:

        def run() -> list[Any]:
            futures = [pool.submit(workloads.spin_timed, loops) for _ in range(tasks)]
            return [f.result() for f in futures]

        yield lambda: _timed_spins(run, loops, tasks)


def run(size: str, repetitions: int) -> Section:
    tasks, cores = TASKS[size], usable_cpus()
    loops = workloads.calibrate(TASK_SECONDS[size])
    contenders = [Contender("serial", "serial loop", partial(serial, loops, tasks), "this process")]
    for peer in SERIES:
        for workers in WORKER_COUNTS:
            contenders.append(
                Contender(
                    f"{peer.key}_{workers}",
                    f"{peer.label}, {workers} worker{'s' if workers > 1 else ''}",
                    partial(pool_of, peer, workers, loops, tasks),
                )
            )
    out = table(
        "speedup",
        f"Speed-up over the number of workers ({cores} usable CPUs)",
        run_rounds(tuple(contenders), repetitions, "scaling"),
        unit="s",
        figures={"work_wall": "work/wall"},
        what=(
            f"{tasks} tasks of about {TASK_SECONDS[size]} s of pure-Python arithmetic, "
            "submitted together, warm pools"
        ),
    )
    add_ratio(out, "speed-up vs serial", median_of(out, "serial"), speedup=True)
    # Where each row sits in the plot: one line per library over the worker counts.
    for row in out["rows"]:
        library, _, workers = row["key"].rpartition("_")
        label = next((p.label for p in SERIES if p.key == library), None)
        if label is not None:
            row.update(series=label, x=int(workers))
    out.update(plot="lines", x_label="workers", cores=cores)
    return {
        "title": "Scaling over worker counts",
        "description": (
            f"{tasks} CPU-bound tasks, pools of {', '.join(map(str, WORKER_COUNTS))} workers on "
            f"{cores} usable CPUs; {rounds(repetitions)}"
        ),
        "repetitions": repetitions,
        "loop_count": loops,
        "usable_cpus": cores,
        "tables": [out],
    }


def main(argv: list[str] | None = None) -> int:
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
