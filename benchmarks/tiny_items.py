"""A map over 200 000 tiny items: where batching decides everything.

    python benchmarks/tiny_items.py [--quick | --smoke] [--out benchmarks/results/tiny_items.json]

Each item is ``x + 1``: far less work than sending it to another process, so
a pool can only keep up with a plain loop by sending items in batches. Every
contender maps the same list on a warm pool of N = usable CPUs workers, with
its own default batching unless noted; the figure is the wall time of the
whole map, and how many times the serial loop's time it took.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


import map_sessions as sessions
import workloads
from machine import usable_cpus
from measure import Contender, run_rounds
from report import Section, add_ratio, main_for, median_of, rounds, table

NAME = "tiny_items"
ITEMS = {"full": 200_000, "quick": 200_000, "smoke": 2_000}
PPE_CHUNKSIZE = 2_000


def run(size: str, repetitions: int) -> Section:
    workers, items = usable_cpus(), list(range(ITEMS[size]))
    expected = [x + 1 for x in items]

    def check(results: Any) -> bool:
        return list(results) == expected

    with_pool = {"fn": workloads.add_one, "items": items, "check": check, "workers": workers}
    contenders = (
        Contender(
            "serial", "serial loop", partial(sessions.serial, **with_pool), "in this process"
        ),
        Contender(
            "ppe",
            "ProcessPoolExecutor.map",
            partial(sessions.process_pool_executor, **with_pool, chunksize=PPE_CHUNKSIZE),
            f"chunksize={PPE_CHUNKSIZE}",
        ),
        Contender(
            "mp_pool",
            "multiprocessing.Pool.map",
            partial(sessions.multiprocessing_pool, **with_pool),
            "default chunksize",
        ),
        Contender(
            "joblib",
            "joblib.Parallel (loky)",
            partial(sessions.joblib_parallel, **with_pool),
            "automatic batching",
        ),
        Contender(
            "mpire",
            "mpire.WorkerPool(keep_alive=True).map",
            partial(sessions.mpire_keep_alive, **with_pool),
            "default chunk size",
        ),
        Contender(
            "makeparallel_map",
            "makeparallel parallel_map",
            partial(sessions.makeparallel_map, **with_pool),
            "default pool, automatic chunks",
        ),
        Contender(
            "makeparallel_map_again",
            "makeparallel parallel_map, second run",
            partial(sessions.makeparallel_map, **with_pool, once_before=True),
            "default pool, automatic chunks; the same map ran once on this pool before",
        ),
        Contender(
            "makeparallel_pool_map",
            "makeparallel Pool.map",
            partial(sessions.makeparallel_pool_map, **with_pool),
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
        "description": f"{len(items):,} items, {workers} workers; {rounds(repetitions)}",
        "repetitions": repetitions,
        "tables": [add_ratio(out, "x serial time", median_of(out, "serial"), speedup=False)],
    }


def main(argv: list[str] | None = None) -> int:
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
