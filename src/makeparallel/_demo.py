"""``python -m makeparallel demo``: the speed-up on this machine, in under a minute.

Counts primes by trial division - plain Python, no NumPy, nothing that
releases the GIL - once serially and once with ``@parallel`` on every
usable core, and prints both times.
"""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from . import api
from ._sizing import usable_cpus

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


parallel_count_primes = api.parallel(count_primes)


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

    started = time.perf_counter()
    serial = [count_primes(lo, hi) for lo, hi in tqdm(ranges, desc="serial  ", unit="block")]
    serial_seconds = time.perf_counter() - started

    started = time.perf_counter()
    handles = [parallel_count_primes(lo, hi) for lo, hi in ranges]
    for _ in tqdm(api.as_completed(handles), total=len(handles), desc="parallel", unit="block"):
        pass
    parallel = api.gather(handles)
    parallel_seconds = time.perf_counter() - started

    if parallel != serial:
        raise SystemExit("demo failed: parallel results differ from serial ones")
    speedup = serial_seconds / parallel_seconds
    print(f"serial:   {serial_seconds:6.2f} s")
    print(f"parallel: {parallel_seconds:6.2f} s")
    print(
        f"speed-up: {speedup:.2f}x with {pool.workers} workers "
        f"(the physical limit is {min(cpus, pool.workers)}.0x); {sum(serial)} primes found"
    )
    return speedup
