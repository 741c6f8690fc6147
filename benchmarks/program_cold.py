"""A whole program's cold start: create a pool, wait for its first result, exit.

    python benchmarks/program_cold.py CONTENDER WORKERS

``whole_program.py`` runs it in a fresh interpreter for each sample. The
program imports its pool library first, then times from creating the pool
(``program_pools.executor``) to the first result of a no-op task, and
prints that time as JSON; the pool is shut down afterwards, untimed. A
fresh program has no thread but the main one, as most scripts: the case in
which makeparallel's default start forks.
"""

from __future__ import annotations

import json
import sys
import time

from program_pools import executor
from workloads import noop


def main(argv: list[str]) -> None:
    key, workers = argv[0], int(argv[1])
    if key.startswith("makeparallel"):
        import makeparallel as mp

        mp.Pool  # noqa: B018 - its names load on first use: before the clock, as the others'
    else:
        import concurrent.futures.process  # noqa: F401
    started = time.perf_counter()
    pool = executor(key, workers)
    pool.submit(noop).result()
    seconds = time.perf_counter() - started
    pool.shutdown()
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1:])
