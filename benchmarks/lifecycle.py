"""How fast makeparallel stops work, and what progress reporting costs.

    python benchmarks/lifecycle.py [--quick] [--out benchmarks/results/lifecycle.json]

* timeout latency: from a task's deadline to its handle failing;
* replacement: from that deadline to a new worker returning the next task's
  result (one-worker pool, so the next task needs the replacement);
* cancel: from ``cancel()`` on a running task to the next queued task's
  result on a one-worker pool;
* both again with ``Pool(start="fork")``, whose replacements are forked;
* progress overhead: a 1-second task of 100 000 steps (about 10 us each) with
  and without a ``report_progress`` call per step, timed inside the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import makeparallel as mp
from lifecycle_workloads import hang, loop_with_progress, noop

TIMEOUT = 0.2


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(samples) * 1000,
        "min_ms": min(samples) * 1000,
        "max_ms": max(samples) * 1000,
    }


def measure_timeout(repeats: int, start: str = "spawn") -> tuple[list[float], list[float]]:
    failed_after: list[float] = []
    served_after: list[float] = []
    with mp.Pool(workers=1, backend="process", start=start) as pool:
        pool.submit(noop).result()
        hang_with_timeout = mp.parallel(hang).options(pool=pool, timeout=TIMEOUT)
        for _ in range(repeats):
            done_at: list[float] = []
            event = threading.Event()

            def record(
                _: object, done_at: list[float] = done_at, event: threading.Event = event
            ) -> None:
                done_at.append(time.monotonic())
                event.set()

            handle = hang_with_timeout()
            handle.add_done_callback(record)
            follower = pool.submit(noop)
            event.wait()
            follower.result()
            served = time.monotonic()
            ran = handle.elapsed  # from its start to its end: the deadline and the stop after it
            assert ran is not None
            deadline = done_at[0] - ran + TIMEOUT
            failed_after.append(done_at[0] - deadline)
            served_after.append(served - deadline)
    return failed_after, served_after


def measure_cancel(repeats: int, start: str = "spawn") -> list[float]:
    samples: list[float] = []
    with mp.Pool(workers=1, backend="process", start=start) as pool:
        pool.submit(noop).result()
        for _ in range(repeats):
            running = pool.submit(hang)
            follower = pool.submit(noop)
            while not running.running():
                time.sleep(0.001)
            started = time.monotonic()
            running.cancel()
            follower.result()
            samples.append(time.monotonic() - started)
    return samples


def measure_progress(repeats: int, steps: int) -> dict[str, float]:
    plain: list[float] = []
    report: list[float] = []
    with mp.Pool(workers=1, backend="process") as pool:
        for _ in range(repeats):  # alternate, so a drift of the machine hits both alike
            plain.append(pool.submit(loop_with_progress, steps, False).result())
            report.append(pool.submit(loop_with_progress, steps, True).result())
    base, with_progress = statistics.median(plain), statistics.median(report)
    return {
        "steps": steps,
        "without_progress_s": base,
        "with_progress_s": with_progress,
        "overhead_percent": (with_progress / base - 1) * 100,
        "cost_per_call_us": (with_progress - base) / steps * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="run once, tiny, print nothing")
    parser.add_argument("--out", default="benchmarks/results/lifecycle.json")
    args = parser.parse_args(argv)
    if args.smoke:
        measure_timeout(1)
        measure_cancel(1)
        measure_timeout(1, "fork")
        measure_cancel(1, "fork")
        measure_progress(1, 1000)
        return 0
    repeats = 3 if args.quick else 15
    failed_after, served_after = measure_timeout(repeats)
    _, forked_served_after = measure_timeout(repeats, "fork")
    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "timeout_seconds": TIMEOUT,
        "timeout_to_handle_failed": _summary(failed_after),
        "timeout_to_replacement_serving": _summary(served_after),
        "cancel_to_next_task_served": _summary(measure_cancel(repeats)),
        "fork_timeout_to_replacement_serving": _summary(forked_served_after),
        "fork_cancel_to_next_task_served": _summary(measure_cancel(repeats, "fork")),
        "progress": measure_progress(3 if args.quick else 11, 100_000),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
