"""Cold start and round trip: makeparallel's fresh-interpreter workers against the
start methods of ``ProcessPoolExecutor``.

    python benchmarks/start_methods.py [--repeats 7]

Prints the median time from creating a 2-worker pool to its first result, and
the median submit-to-result round trip of one task on a warm pool.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import makeparallel as mp
from lifecycle_workloads import echo
from makeparallel._bench import round_trip


def cold_makeparallel() -> float:
    started = time.perf_counter()
    pool = mp.Pool(2, backend="process")
    pool.submit(echo, 1).result()
    elapsed = time.perf_counter() - started
    pool.shutdown()
    return elapsed


def cold_executor(method: str) -> float:
    started = time.perf_counter()
    executor = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))
    executor.submit(echo, 1).result()
    elapsed = time.perf_counter() - started
    executor.shutdown()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    # fork-based executors are started first, before any pool thread exists here
    warnings.simplefilter("ignore", DeprecationWarning)
    rows = {
        f"ProcessPoolExecutor ({method})": statistics.median(
            cold_executor(method) for _ in range(args.repeats)
        )
        for method in ("fork", "forkserver", "spawn")
    }
    rows["makeparallel (fresh interpreter)"] = statistics.median(
        cold_makeparallel() for _ in range(args.repeats)
    )
    print("cold start: pool creation to first result, median")
    for label, seconds in rows.items():
        print(f"  {label:36s} {seconds * 1000:7.1f} ms")
    print("round trip: one task submitted and its result read, warm pool, median")
    n = max(50, args.repeats * 40)
    with cf.ProcessPoolExecutor(2) as executor:
        executor.submit(echo, 0).result()
        print(f"  {'ProcessPoolExecutor':36s} {round_trip(executor.submit, n) * 1e6:7.0f} us")
    with mp.Pool(2, backend="process") as pool:
        pool.submit(echo, 0).result()
        print(f"  {'makeparallel':36s} {round_trip(pool.submit, n) * 1e6:7.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
