"""``python -m makeparallel bench``: a quick check of this machine, in under a minute.

Times 8 tasks of about 0.1 s of pure-Python work three ways - a plain loop,
makeparallel's process pool, and ``concurrent.futures.ProcessPoolExecutor`` -
plus the round trip of one tiny task, and prints medians. Each pool first runs
one untimed round: a worker that is a fresh interpreter imports the task's
module at its first task, which a forked one has done already. The two pools
take turns going first. The project's full comparison with every peer lives
in ``benchmarks/run.py``.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import time
from collections.abc import Callable

from . import api
from ._sizing import usable_cpus
from .pool import Pool

TASKS = 8


def spin(loops: int) -> float:
    """Pure-Python arithmetic; returns the CPU seconds it used."""
    started = time.thread_time()
    total = 0
    for i in range(loops):
        total += i * i % 7
    return time.thread_time() - started


def echo(x: int) -> int:
    return x


def _calibrate(seconds: float) -> int:
    loops = 10_000
    while True:
        started = time.perf_counter()
        spin(loops)
        elapsed = time.perf_counter() - started
        if elapsed > 0.02:
            return max(1, int(loops * seconds / elapsed))
        loops *= 4


def _time(run: Callable[[], list[float]]) -> tuple[float, float]:
    started = time.perf_counter()
    cpu = sum(run())
    return time.perf_counter() - started, cpu


def round_trip(submit: Callable[..., concurrent.futures.Future[int]], n: int) -> float:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        submit(echo, i).result()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run(rounds: int = 3) -> int:
    workers = usable_cpus()
    loops = _calibrate(0.1)
    print(f"{TASKS} tasks of ~0.1 s pure Python, {workers} workers, median of {rounds} rounds")
    # The executor starts (and, on Linux before 3.14, forks) its workers before
    # makeparallel's pool starts any thread: forking a threaded process is unsafe.
    executor = concurrent.futures.ProcessPoolExecutor(workers)
    list(executor.map(echo, range(workers)))
    pool = Pool(workers=workers, backend="process", name="bench")
    try:
        pool.submit(echo, 0).result()
        contenders: dict[str, Callable[[], list[float]]] = {
            "serial loop": lambda: [spin(loops) for _ in range(TASKS)],
            "makeparallel Pool": lambda: api.gather(
                [pool.submit(spin, loops) for _ in range(TASKS)]
            ),
            "ProcessPoolExecutor": lambda: list(executor.map(spin, [loops] * TASKS)),
        }
        pools = ["makeparallel Pool", "ProcessPoolExecutor"]
        for name in pools:
            contenders[name]()  # warm-up, untimed
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
        for turn in range(rounds):
            for name in ["serial loop", *(pools if turn % 2 == 0 else reversed(pools))]:
                samples[name].append(_time(contenders[name]))
        serial = statistics.median(wall for wall, _ in samples["serial loop"])
        for name, runs in samples.items():
            wall = statistics.median(w for w, _ in runs)
            busy = statistics.median(cpu / w for w, cpu in runs)
            print(
                f"  {name:22s} {wall:6.3f} s   speed-up {serial / wall:4.2f}x   "
                f"cores busy {busy:4.2f} of {workers}"
            )
        print("round trip of one tiny task (warm pool, median of 200)")
        print(f"  {'makeparallel Pool':22s} {round_trip(pool.submit, 200) * 1e6:6.0f} us")
        print(f"  {'ProcessPoolExecutor':22s} {round_trip(executor.submit, 200) * 1e6:6.0f} us")
    finally:
        pool.shutdown()
        executor.shutdown()
    return 0
