"""I/O-bound tasks on threads: 200 sleeps of 10 ms on 32 threads.

    python benchmarks/io_bound.py [--quick | --smoke] [--out FILE]

A task that waits (here ``time.sleep``, standing for a network or disk call)
releases the GIL, so threads overlap such tasks well and processes are not
needed. makeparallel's ``backend="thread"`` pool against
``concurrent.futures.ThreadPoolExecutor``, both with 32 threads, warm. The
ideal time is the number of waves of tasks times the sleep: with 200 tasks
on 32 threads, 7 waves of 10 ms, 70 ms; the figure is how close each pool
gets to it.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
import workloads
from measure import Contender, Measure, run_rounds, timed
from report import Section, add_ratio, main_for, rounds, table

NAME = "io_bound"
THREADS = 32
SLEEP = 0.01
TASKS = {"full": 200, "quick": 200, "smoke": 40}

THREAD_POOLS = (
    peers.Peer("thread_pool_executor", "ThreadPoolExecutor", peers.thread_pool_executor),
    peers.Peer(
        "makeparallel", 'makeparallel Pool(backend="thread")', peers.makeparallel_pool("thread")
    ),
)


@contextlib.contextmanager
def sleeps(peer: peers.Peer, tasks: int) -> Iterator[Measure]:
    with peers.warm_pool(peer, THREADS) as pool:

        def run() -> list[Any]:
            futures = [pool.submit(workloads.sleep_for, SLEEP) for _ in range(tasks)]
            return [f.result() for f in futures]

        yield lambda: timed(run, lambda results: results == [SLEEP] * tasks)


def run(size: str, repetitions: int) -> Section:
    tasks = TASKS[size]
    ideal = math.ceil(tasks / THREADS) * SLEEP
    contenders = tuple(
        Contender(p.key, p.label, partial(sleeps, p, tasks), p.note) for p in THREAD_POOLS
    )
    out = table(
        "sleeps",
        f"{tasks} sleeps of {SLEEP * 1000:.0f} ms on {THREADS} threads",
        run_rounds(contenders, repetitions, "I/O-bound"),
        unit="ms",
        scale=1e3,
        what=(
            f"{tasks} tasks of `time.sleep({SLEEP})` submitted together, then every result; "
            f"ideal: {math.ceil(tasks / THREADS)} waves x {SLEEP * 1000:.0f} ms = "
            f"{ideal * 1000:.0f} ms"
        ),
    )
    return {
        "title": "I/O-bound tasks on threads",
        "description": f"{THREADS} threads, warm; {rounds(repetitions)}",
        "repetitions": repetitions,
        "ideal_ms": round(ideal * 1000, 3),
        "tables": [add_ratio(out, "x ideal time", ideal * 1000, speedup=False)],
    }


def main(argv: list[str] | None = None) -> int:
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
