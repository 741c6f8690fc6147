"""What a test may know of a pool's processes, through the public API and /proc."""

from __future__ import annotations

import os

import makeparallel as mp


def worker_pids(pool: mp.Pool) -> list[int]:
    return [worker["pid"] for worker in pool.workers_info()]


def workers_in(pool: mp.Pool, *states: str) -> int:
    """How many of the pool's workers are in one of ``states`` (starting, idle, busy...)."""
    return sum(1 for worker in pool.workers_info() if worker["state"] in states)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a pool's workers, and its fork server)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found += map(int, listing.read().split())
        except OSError:
            continue
    return found
