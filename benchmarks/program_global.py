"""A main script whose function reads a large global: 1 million dict entries at module level.

    python benchmarks/program_global.py CONTENDER WORKERS submits|map COUNT

``lookup`` is defined here, in ``__main__``, and reads ``TABLE``, a dict
this script builds at import time (of ``PROGRAM_GLOBAL_ENTRIES`` entries if
that environment variable is set, as in the suite's smoke run). On a warm
pool (``program_pools.executor``, one short nap per worker first) the
script either submits ``lookup`` COUNT times and reads every result, or
maps it over COUNT keys with ``chunksize=1``, and prints the time of that
part alone as JSON. A pool that pickles a ``__main__`` function by value
sends ``TABLE`` with it; one that forks has it already; with ``spawn`` and
``forkserver`` a ``ProcessPoolExecutor`` worker imports this script again
and builds its own ``TABLE``, hence the ``__main__`` guard below.
"""

from __future__ import annotations

import os
import sys
import time

from program_pools import executor
from workloads import nap

ENTRIES = int(os.environ.get("PROGRAM_GLOBAL_ENTRIES", "1000000"))
TABLE = {i: 3 * i for i in range(ENTRIES)}


def lookup(key: int) -> int:
    return TABLE[key]


def main(argv: list[str]) -> None:
    key, workers, kind, count = argv[0], int(argv[1]), argv[2], int(argv[3])
    keys = [i * (ENTRIES // count) for i in range(count)]
    pool = executor(key, workers)
    for warm in [pool.submit(nap, 0.05) for _ in range(workers)]:
        warm.result()
    started = time.perf_counter()
    if kind == "submits":
        futures = [pool.submit(lookup, k) for k in keys]
        results = [future.result() for future in futures]
    else:
        results = list(pool.map(lookup, keys, chunksize=1))
    elapsed = time.perf_counter() - started
    pool.shutdown()
    if results != [3 * k for k in keys]:
        raise SystemExit("wrong results")
    import json

    print(json.dumps({"seconds": elapsed}))


if __name__ == "__main__":
    main(sys.argv[1:])
