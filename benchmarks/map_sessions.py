"""One map of a function over a list, as each library runs it: a timed session per library.

Every session sets its pool up (warm: each worker has run one short nap),
yields the measure that times one whole map of ``fn`` over ``items`` (the
result checked with ``check``), then tears the pool down. ``fn`` must be
importable by name (``workloads.py``), so every library's workers find it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any

import workloads
from measure import WARMUP_NAP, Measure, timed, warm_up

Fn = Callable[[Any], Any]
Check = Callable[[Any], bool]


@contextlib.contextmanager
def serial(fn: Fn, items: list[Any], check: Check, workers: int) -> Iterator[Measure]:
    yield lambda: timed(lambda: [fn(x) for x in items], check)


@contextlib.contextmanager
def process_pool_executor(
    fn: Fn, items: list[Any], check: Check, workers: int, chunksize: int = 1
) -> Iterator[Measure]:
    with cf.ProcessPoolExecutor(workers) as executor:
        warm_up(executor.submit, workers)
        yield lambda: timed(lambda: list(executor.map(fn, items, chunksize=chunksize)), check)


@contextlib.contextmanager
def multiprocessing_pool(fn: Fn, items: list[Any], check: Check, workers: int) -> Iterator[Measure]:
    pool = multiprocessing.Pool(workers)
    try:
        pool.map(workloads.nap, [WARMUP_NAP] * workers, chunksize=1)
        yield lambda: timed(lambda: pool.map(fn, items), check)
    finally:
        pool.close()
        pool.join()


@contextlib.contextmanager
def joblib_parallel(fn: Fn, items: list[Any], check: Check, workers: int) -> Iterator[Measure]:
    from joblib import Parallel, delayed  # type: ignore[import-untyped]
    from joblib.externals.loky import get_reusable_executor  # type: ignore[import-untyped]

    try:
        Parallel(n_jobs=workers)(delayed(workloads.nap)(WARMUP_NAP) for _ in range(workers))
        call = delayed(fn)
        yield lambda: timed(lambda: Parallel(n_jobs=workers)(call(x) for x in items), check)
    finally:
        get_reusable_executor().shutdown(wait=True)


@contextlib.contextmanager
def mpire_keep_alive(fn: Fn, items: list[Any], check: Check, workers: int) -> Iterator[Measure]:
    from mpire.pool import WorkerPool

    pool = WorkerPool(n_jobs=workers, keep_alive=True)
    try:
        pool.map(workloads.nap, [WARMUP_NAP] * workers, chunk_size=1)
        yield lambda: timed(lambda: pool.map(fn, items), check)
    finally:
        pool.terminate()


@contextlib.contextmanager
def makeparallel_map(
    fn: Fn, items: list[Any], check: Check, workers: int, once_before: bool = False
) -> Iterator[Measure]:
    """``parallel_map`` on a fresh default pool; ``once_before``: the same map ran once already."""
    import makeparallel as mp

    mp.configure(workers=workers)  # a fresh default pool of N workers
    try:
        mp.parallel_map(workloads.nap, [WARMUP_NAP] * workers, chunksize=1)
        if once_before:  # as in a program that maps more than once
            mp.parallel_map(fn, items)
        yield lambda: timed(lambda: mp.parallel_map(fn, items), check)
    finally:
        mp.configure()  # shuts that default pool down


@contextlib.contextmanager
def makeparallel_pool_map(
    fn: Fn, items: list[Any], check: Check, workers: int
) -> Iterator[Measure]:
    import makeparallel as mp

    with mp.Pool(workers=workers) as pool:
        warm_up(pool.submit, workers)
        yield lambda: timed(lambda: list(pool.map(fn, items)), check)
