"""A map over 200 000 tiny items: where batching decides everything.

    python benchmarks/tiny_items.py [--quick | --smoke] [--out benchmarks/results/tiny_items.json]

Each item is ``x + 1``: far less work than sending it to another process, so
a pool can only keep up with a plain loop by sending items in batches. Every
contender maps the same list on a warm pool of N = usable CPUs workers, with
its own default batching unless noted; the figure is the wall time of the
whole map, and how many times the serial loop's time it took.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


import workloads
from machine import usable_cpus
from measure import WARMUP_NAP, Contender, Measure, run_rounds, timed, warm_up
from report import Section, add_ratio, main_for, median_of, rounds, table

NAME = "tiny_items"
ITEMS = {"full": 200_000, "quick": 200_000, "smoke": 2_000}
PPE_CHUNKSIZE = 2_000


@contextlib.contextmanager
def serial(items: list[int], check: Any) -> Iterator[Measure]:
    yield lambda: timed(lambda: [workloads.add_one(x) for x in items], check)


@contextlib.contextmanager
def process_pool_executor(items: list[int], check: Any, workers: int) -> Iterator[Measure]:
    with cf.ProcessPoolExecutor(workers) as executor:
        warm_up(executor.submit, workers)
        yield lambda: timed(
            lambda: list(executor.map(workloads.add_one, items, chunksize=PPE_CHUNKSIZE)), check
        )


@contextlib.contextmanager
def multiprocessing_pool(items: list[int], check: Any, workers: int) -> Iterator[Measure]:
    pool = multiprocessing.Pool(workers)
    try:
        pool.map(workloads.nap, [WARMUP_NAP] * workers, chunksize=1)
        yield lambda: timed(lambda: pool.map(workloads.add_one, items), check)
    finally:
        pool.close()
        pool.join()


@contextlib.contextmanager
def joblib_parallel(items: list[int], check: Any, workers: int) -> Iterator[Measure]:
    from joblib import Parallel, delayed  # type: ignore[import-untyped]
    from joblib.externals.loky import get_reusable_executor  # type: ignore[import-untyped]

    try:
        Parallel(n_jobs=workers)(delayed(workloads.nap)(WARMUP_NAP) for _ in range(workers))
        add_one = delayed(workloads.add_one)
        yield lambda: timed(lambda: Parallel(n_jobs=workers)(add_one(x) for x in items), check)
    finally:
        get_reusable_executor().shutdown(wait=True)


@contextlib.contextmanager
def mpire_keep_alive(items: list[int], check: Any, workers: int) -> Iterator[Measure]:
    from mpire.pool import WorkerPool

    pool = WorkerPool(n_jobs=workers, keep_alive=True)
    try:
        pool.map(workloads.nap, [WARMUP_NAP] * workers, chunk_size=1)
        yield lambda: timed(lambda: pool.map(workloads.add_one, items), check)
    finally:
        pool.terminate()


@contextlib.contextmanager
def makeparallel_map(
    items: list[int], check: Any, workers: int, once_before: bool = False
) -> Iterator[Measure]:
    import makeparallel as mp

    mp.configure(workers=workers)  # a fresh default pool of N workers
    try:
        mp.parallel_map(workloads.nap, [WARMUP_NAP] * workers, chunksize=1)
        if once_before:  # as in a program that maps more than once
            mp.parallel_map(workloads.add_one, items)
        yield lambda: timed(lambda: mp.parallel_map(workloads.add_one, items), check)
    finally:
        mp.configure()  # shuts that default pool down


@contextlib.contextmanager
def makeparallel_pool_map(items: list[int], check: Any, workers: int) -> Iterator[Measure]:
    import makeparallel as mp

    with mp.Pool(workers=workers) as pool:
        warm_up(pool.submit, workers)
        yield lambda: timed(lambda: list(pool.map(workloads.add_one, items)), check)


def run(size: str, repetitions: int) -> Section:
    workers, items = usable_cpus(), list(range(ITEMS[size]))
    expected = [x + 1 for x in items]

    def check(results: Any) -> bool:
        return list(results) == expected

    with_pool = {"items": items, "check": check, "workers": workers}
    contenders = (
        Contender("serial", "serial loop", partial(serial, items, check), "in this process"),
        Contender(
            "ppe",
            "ProcessPoolExecutor.map",
            partial(process_pool_executor, **with_pool),
            f"chunksize={PPE_CHUNKSIZE}",
        ),
        Contender(
            "mp_pool",
            "multiprocessing.Pool.map",
            partial(multiprocessing_pool, **with_pool),
            "default chunksize",
        ),
        Contender(
            "joblib",
            "joblib.Parallel (loky)",
            partial(joblib_parallel, **with_pool),
            "automatic batching",
        ),
        Contender(
            "mpire",
            "mpire.WorkerPool(keep_alive=True).map",
            partial(mpire_keep_alive, **with_pool),
            "default chunk size",
        ),
        Contender(
            "makeparallel_map",
            "makeparallel parallel_map",
            partial(makeparallel_map, **with_pool),
            "default pool, automatic chunks",
        ),
        Contender(
            "makeparallel_map_again",
            "makeparallel parallel_map, second run",
            partial(makeparallel_map, **with_pool, once_before=True),
            "default pool, automatic chunks; the same map ran once on this pool before",
        ),
        Contender(
            "makeparallel_pool_map",
            "makeparallel Pool.map",
            partial(makeparallel_pool_map, **with_pool),
            "automatic chunks",
        ),
    )
    out = table(
        "map",
        f"Map over {len(items):,} tiny items",
        run_rounds(contenders, repetitions, "tiny items"),
        unit="ms",
        scale=1e3,
        what=f"`x + 1` over a list of {len(items):,} ints, all results in a list, warm pools",
    )
    return {
        "title": "Many tiny items",
        "description": (
            f"{len(items):,} items, {workers} workers; {rounds(repetitions)}, contenders "
            "alternating within each round"
        ),
        "repetitions": repetitions,
        "tables": [add_ratio(out, "x serial time", median_of(out, "serial"), speedup=False)],
    }


def main(argv: list[str] | None = None) -> int:
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
