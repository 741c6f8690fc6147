"""A lazy map over a generator of 10 million items: time, and how much memory the parent needs.

    python benchmarks/streaming.py [--quick | --smoke] [--out benchmarks/results/streaming.json]

makeparallel's ``imap`` pulls input only as workers free up, so the parent's
memory should stay flat however long the generator is. ``ProcessPoolExecutor.map``
and ``multiprocessing.Pool.imap`` read their whole input up front, so their
memory grows with it; they get 1 million items (not 10 million, which would
only take longer to show the same growth), and makeparallel runs at that
size too for a like-for-like row.

Every sample runs in a fresh interpreter (``--child``), so one contender's
memory cannot inflate another's: it starts a warm pool, then reads its own
resident memory (VmRSS) and resets the kernel's peak (VmHWM), consumes the
map (summing the results), and reports the wall time and the peak's rise
above the start.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads
from machine import usable_cpus
from measure import (
    WARMUP_NAP,
    Contender,
    Measure,
    PeakRss,
    in_fresh_process,
    print_child_result,
    run_rounds,
    warm_up,
)
from report import Section, main_for, rounds, table

NAME = "streaming"
SCRIPT = Path(__file__).resolve()
ITEMS = {"full": 10_000_000, "quick": 10_000_000, "smoke": 20_000}
PEER_ITEMS = {"full": 1_000_000, "quick": 1_000_000, "smoke": 10_000}
CHUNKSIZE = 2_000  # for the peers, which send one item at a time unless told otherwise

Consume = Callable[[Iterable[int]], int]


def generate(n: int) -> Iterator[int]:
    """The input: ``n`` ints, made one at a time (never a list)."""
    yield from range(n)


def makeparallel_imap(workers: int) -> Consume:
    import makeparallel as mp

    mp.configure(workers=workers)
    mp.parallel_map(workloads.nap, [WARMUP_NAP] * workers, chunksize=1)
    return lambda items: sum(mp.imap(workloads.add_one, items))


def process_pool_executor_map(workers: int) -> Consume:
    executor = cf.ProcessPoolExecutor(workers)
    warm_up(executor.submit, workers)
    return lambda items: sum(executor.map(workloads.add_one, items, chunksize=CHUNKSIZE))


def multiprocessing_pool_imap(workers: int) -> Consume:
    pool = multiprocessing.Pool(workers)
    pool.map(workloads.nap, [WARMUP_NAP] * workers, chunksize=1)
    return lambda items: sum(pool.imap(workloads.add_one, items, chunksize=CHUNKSIZE))


STARTS: dict[str, Callable[[int], Consume]] = {
    "makeparallel": makeparallel_imap,
    "ppe": process_pool_executor_map,
    "mp_pool": multiprocessing_pool_imap,
}


def child(key: str, n: int, workers: int) -> None:
    """One sample, in this fresh interpreter; prints its figures as JSON."""
    consume = STARTS[key](workers)
    with PeakRss() as memory:
        started = time.perf_counter()
        total = consume(generate(n))
        elapsed = time.perf_counter() - started
    expected = n * (n + 1) // 2  # the sum of x + 1 over range(n)
    if total != expected:
        raise SystemExit(f"wrong result: {total} != {expected}")
    print_child_result({"seconds": elapsed, "rss_mib": memory.growth_mib or 0.0})


def run(size: str, repetitions: int) -> Section:
    workers, n, peer_n = usable_cpus(), ITEMS[size], PEER_ITEMS[size]

    def sample(key: str, items: int) -> Callable[[], AbstractContextManager[Measure]]:
        return partial(in_fresh_process, SCRIPT, key, str(items), str(workers))

    contenders = (
        Contender(
            "makeparallel",
            f"makeparallel imap, {n:,} items",
            sample("makeparallel", n),
            "default pool, automatic chunks",
        ),
        Contender(
            "makeparallel_peer_size",
            f"makeparallel imap, {peer_n:,} items",
            sample("makeparallel", peer_n),
            "default pool, automatic chunks",
        ),
        Contender(
            "ppe",
            f"ProcessPoolExecutor.map, {peer_n:,} items",
            sample("ppe", peer_n),
            f"chunksize={CHUNKSIZE}; reads all input before the first result; capped at "
            f"{peer_n:,} items",
        ),
        Contender(
            "mp_pool",
            f"multiprocessing.Pool.imap, {peer_n:,} items",
            sample("mp_pool", peer_n),
            f"chunksize={CHUNKSIZE}; a feeder thread reads input as fast as the pipe to the "
            f"workers takes it; capped at {peer_n:,} items",
        ),
    )
    return {
        "title": "Streaming a generator",
        "description": (
            f"`x + 1` over a generator, the results summed as they come; {workers} workers; "
            f"each sample in a fresh interpreter; {rounds(repetitions)}"
        ),
        "repetitions": repetitions,
        "tables": [
            table(
                "imap",
                "imap over a generator",
                run_rounds(contenders, repetitions, "streaming"),
                unit="s",
                figures={"rss_mib": "peak RSS growth of the parent (MiB)"},
                what=(
                    "wall time to consume the whole map on a warm pool, and how far the "
                    "parent's resident memory rose above its level at the start"
                ),
            )
        ],
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        child(argv[1], int(argv[2]), int(argv[3]))
        return 0
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
