"""Pool.health(): a cheap, typed, JSON-ready answer to "is this pool all right?".

Built for a web health endpoint polled every second: it reads counters the
pool and its engine keep anyway and never waits on a worker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["HealthReport", "RunningTask"]

#: crashes within a minute, per expected worker, that make a pool unhealthy
CRASHES_PER_WORKER_PER_MINUTE = 1


@dataclass(frozen=True)
class RunningTask:
    task_id: int
    name: str
    seconds: float
    worker: str | None


@dataclass(frozen=True)
class HealthReport:
    """The state of a pool at one moment. ``to_dict()`` gives plain JSON data."""

    pool: str
    backend: str
    state: str  # "running", "shutting_down" or "closed"
    healthy: bool
    reasons: tuple[str, ...]  # why it is not healthy (empty when healthy)
    workers_expected: int
    workers_alive: int
    workers_starting: int
    workers_busy: int
    workers_idle: int
    queue_depth: int  # tasks waiting for a worker
    tasks_running: int
    tasks_waiting_to_retry: int
    longest_running: tuple[RunningTask, ...]  # up to five, longest first
    restarts_last_minute: int
    crashes_last_minute: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _replace_verdict(self, reasons: tuple[str, ...]) -> HealthReport:
        return dataclasses.replace(self, healthy=not reasons, reasons=reasons)


def judge(
    state: str,
    broken: BaseException | None,
    expected: int,
    alive: int,
    starting: int,
    crashes: int,
) -> tuple[str, ...]:
    """The reasons a pool is unhealthy; empty when it is healthy."""
    reasons: list[str] = []
    if state != "running":
        reasons.append(f"the pool is {state.replace('_', ' ')}")
    if broken is not None:
        reasons.append(f"the pool cannot run tasks: {broken}")
    if state == "running" and broken is None and alive + starting < expected:
        reasons.append(f"{alive} of {expected} workers alive")
    limit = max(3, expected * CRASHES_PER_WORKER_PER_MINUTE)
    if crashes >= limit:
        reasons.append(f"{crashes} workers crashed in the last minute")
    return tuple(reasons)
