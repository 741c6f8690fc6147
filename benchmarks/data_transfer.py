"""Large arguments: one task that gets 100 MB and returns a few numbers.

    python benchmarks/data_transfer.py [--quick | --smoke] [--out FILE]

The argument is either a ``bytes`` object or a NumPy float64 array of 100 MB;
the task returns its length and the sum of three of its elements, so the
result is small and the figure is the cost of sending the argument: the
round trip from submit to result on a warm pool, and how far the parent's
resident memory rose while sending (pickled copies, buffers).

Every sample runs in a fresh interpreter (``--child``): it starts a warm
pool and builds the payload first, then reads its resident memory, resets
the kernel's peak, and times the round trip.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
import workloads
from measure import Contender, Measure, PeakRss, in_fresh_process, print_child_result, run_rounds
from report import Section, main_for, rounds, table

NAME = "data_transfer"
SCRIPT = Path(__file__).resolve()
MEGABYTES = {"full": 100, "quick": 100, "smoke": 1}
WORKERS = 2
PAYLOADS = {"bytes": "`bytes` object", "numpy": "NumPy float64 array"}
CONTENDERS = (
    peers.PROCESS_POOL_EXECUTOR,
    peers.MULTIPROCESSING_POOL,
    peers.LOKY,
    peers.MAKEPARALLEL,
)


def payload(kind: str, megabytes: int) -> Any:
    size = megabytes * 2**20
    if kind == "bytes":
        return bytes(range(256)) * (size // 256)
    import numpy as np

    return np.arange(size // 8, dtype=np.float64)


def child(peer_key: str, kind: str, megabytes: int) -> None:
    """One sample, in this fresh interpreter; prints its figures as JSON."""
    peer = next(p for p in CONTENDERS if p.key == peer_key)
    data = payload(kind, megabytes)
    expected = workloads.probe(data)
    small = data[:8]
    with peers.warm_pool(peer, WORKERS) as pool:
        # Every worker unpickles a small one first: NumPy is imported in a
        # fresh-interpreter worker (not in a forked one) before the clock starts.
        for warmup in [pool.submit(workloads.probe, small) for _ in range(WORKERS * 2)]:
            warmup.result()
        with PeakRss() as memory:
            started = time.perf_counter()
            result = pool.submit(workloads.probe, data).result()
            elapsed = time.perf_counter() - started
    if tuple(result) != expected:
        raise SystemExit(f"wrong result: {result!r} != {expected!r}")
    print_child_result({"seconds": elapsed, "rss_mib": memory.growth_mib or 0.0})


def run(size: str, repetitions: int) -> Section:
    megabytes = MEGABYTES[size]

    def sample(key: str, kind: str) -> Callable[[], AbstractContextManager[Measure]]:
        return partial(in_fresh_process, SCRIPT, key, kind, str(megabytes))

    tables = []
    for kind, description in PAYLOADS.items():
        contenders = tuple(
            Contender(p.key, p.label, sample(p.key, kind), p.note) for p in CONTENDERS
        )
        tables.append(
            table(
                kind,
                f"A {megabytes} MB {description} as the argument",
                run_rounds(contenders, repetitions, f"data transfer ({kind})"),
                unit="ms",
                scale=1e3,
                figures={"rss_mib": "peak RSS growth of the parent (MiB)"},
                what=(
                    f"submit of one task with a {megabytes} MB {description} to a warm pool, "
                    "until its small result is back; and how far the parent's resident "
                    "memory rose meanwhile"
                ),
            )
        )
    return {
        "title": "Large arguments",
        "description": (
            f"one task, a {megabytes} MB argument, a small result; pools of {WORKERS} workers; "
            f"each sample in a fresh interpreter; {rounds(repetitions)}"
        ),
        "repetitions": repetitions,
        "tables": tables,
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2], int(argv[3]))
        return 0
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
