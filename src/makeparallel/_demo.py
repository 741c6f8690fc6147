"""``python -m makeparallel demo``: the speed-up on this machine, in under a minute.

Counts primes by trial division - plain Python, no NumPy, nothing that
releases the GIL - once serially and once with ``@parallel`` on every
usable core, and prints both times.

The serial run happens in one of the pool's own worker processes (one block
after another, reporting its progress), so both runs use the same kind of
process. On virtual machines the same loop still runs a few percent faster
in one process than in another, so the demo also prints how many cores were
busy on average: the CPU time the blocks used divided by the wall time.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from . import api
from ._sizing import usable_cpus
from ._worker.context import report_progress

BLOCKS = 12
BLOCK_SIZE = 60_000
START = 10_000_000


def count_primes(lo: int, hi: int) -> int:
    """How many primes lie in [lo, hi): pure-Python CPU work."""
    count = 0
    for n in range(max(lo, 2), hi):
        if n % 2 == 0:
            count += n == 2
            continue
        d = 3
        while d * d <= n:
            if n % d == 0:
                break
            d += 2
        else:
            count += 1
    return count


def timed_count(lo: int, hi: int) -> tuple[int, float]:
    """The count, and the CPU seconds this block used."""
    started = time.thread_time()
    return count_primes(lo, hi), time.thread_time() - started


parallel_count = api.parallel(timed_count)


def count_serially(ranges: list[tuple[int, int]]) -> list[tuple[int, float]]:
    """Every block, one after another, on one core."""
    results = []
    for done, (lo, hi) in enumerate(ranges, start=1):
        results.append(timed_count(lo, hi))
        report_progress(done, len(ranges))
    return results


def run(blocks: int = BLOCKS, block_size: int = BLOCK_SIZE) -> float:
    """Run the demo; returns the measured speed-up."""
    ranges = [(START + i * block_size, START + (i + 1) * block_size) for i in range(blocks)]
    cpus = usable_cpus()
    pool = api.default_pool()
    print(f"makeparallel demo: counting primes in {blocks} blocks of pure-Python work")
    print(f"usable CPUs: {cpus}; engine: {pool.backend} with {pool.workers} workers")

    started = time.perf_counter()
    pool.submit(count_primes, 0, 10).result()  # make sure the workers are up
    print(f"workers ready in {time.perf_counter() - started:.2f} s (not counted below)")

    with tqdm(total=len(ranges), desc="serial  ", unit="block") as bar:

        def show(fraction: float) -> None:
            bar.n = round(fraction * len(ranges))
            bar.refresh()

        started = time.perf_counter()
        serial = pool.submit(count_serially, ranges).on_progress(show).result()
        serial_seconds = time.perf_counter() - started
        show(1.0)

    started = time.perf_counter()
    handles = [parallel_count(lo, hi) for lo, hi in ranges]
    for _ in tqdm(api.as_completed(handles), total=len(handles), desc="parallel", unit="block"):
        pass
    parallel = api.gather(handles)
    parallel_seconds = time.perf_counter() - started

    if [count for count, _ in parallel] != [count for count, _ in serial]:
        raise SystemExit("demo failed: parallel results differ from serial ones")
    speedup = serial_seconds / parallel_seconds
    busy = sum(cpu for _, cpu in parallel) / parallel_seconds
    limit = min(cpus, pool.workers)
    print(f"serial:   {serial_seconds:6.2f} s  (one worker, one block after another)")
    print(f"parallel: {parallel_seconds:6.2f} s  ({pool.workers} workers)")
    print(f"speed-up: {speedup:.2f}x; cores busy on average: {busy:.2f} of {limit}")
    print(f"{sum(count for count, _ in serial)} primes found")
    return speedup
