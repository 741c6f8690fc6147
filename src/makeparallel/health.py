"""Pool.health(): a cheap, typed, JSON-ready answer to "is this pool all right?".

Built for a web health endpoint polled every second: it reads counters the
pool and its engine keep anyway and never waits on a worker.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._task import Task
    from .backends.base import EngineStats

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
class WorkerHealth:
    """One worker process: what it uses and what it does."""

    pid: int
    state: str  # starting, idle, busy, claimed, retiring, stopping
    rss_bytes: int | None  # resident memory (None where it cannot be read)
    cpu_percent: float | None  # since the last report (100.0: one core, all the time)
    tasks_done: int
    task_id: int | None  # the task it runs now


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
    workers_stuck: int  # threads still running a task that timed out or was cancelled
    queue_depth: int  # tasks waiting for a worker
    tasks_running: int
    tasks_waiting_to_retry: int
    longest_running: tuple[RunningTask, ...]  # up to five, longest first
    restarts_last_minute: int
    crashes_last_minute: int
    workers: tuple[WorkerHealth, ...] = ()  # process workers (empty for other engines)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _replace_verdict(self, reasons: tuple[str, ...]) -> HealthReport:
        return dataclasses.replace(self, healthy=not reasons, reasons=reasons)


def judge(
    state: str, broken: BaseException | None, expected: int, engine: EngineStats
) -> tuple[str, ...]:
    """The reasons a pool is unhealthy; empty when it is healthy."""
    reasons: list[str] = []
    if state != "running":
        reasons.append(f"the pool is {state.replace('_', ' ')}")
    if broken is not None:
        reasons.append(f"the pool cannot run tasks: {broken}")
    if state == "running" and broken is None and engine.alive + engine.starting < expected:
        reasons.append(f"{engine.alive} of {expected} workers alive")
    limit = max(3, expected * CRASHES_PER_WORKER_PER_MINUTE)
    if engine.crashes_last_minute >= limit:
        reasons.append(f"{engine.crashes_last_minute} workers crashed in the last minute")
    if engine.stuck:
        reasons.append(
            f"{engine.stuck} worker thread(s) still run a task that timed out or was "
            "cancelled (a thread cannot be killed; each leaves when its task returns)"
        )
    return tuple(reasons)


def report(
    pool: str,
    backend: str,
    state: str,
    broken: BaseException | None,
    expected: int,
    engine: EngineStats,
    running: list[Task],
    queue_depth: int,
    retrying: int,
    workers: list[dict[str, Any]] | None = None,
) -> HealthReport:
    """The report of one pool, from what it and its engine counted."""
    now = time.monotonic()
    started = [(t, t.handle._started_at) for t in running]
    longest = sorted(
        (
            RunningTask(t.id, t.handle.name, round(now - at, 3), t.worker)
            for t, at in started
            if at is not None
        ),
        key=lambda r: -r.seconds,
    )[:5]
    busy = min(len(running), engine.alive)
    return HealthReport(
        pool=pool,
        backend=backend,
        state=state,
        healthy=False,
        reasons=(),
        workers_expected=expected,
        workers_alive=engine.alive,
        workers_starting=engine.starting,
        workers_busy=busy,
        workers_idle=max(0, engine.alive - busy),
        workers_stuck=engine.stuck,
        queue_depth=queue_depth,
        tasks_running=len(running),
        tasks_waiting_to_retry=retrying,
        longest_running=tuple(longest),
        restarts_last_minute=engine.restarts_last_minute,
        crashes_last_minute=engine.crashes_last_minute,
        workers=tuple(
            WorkerHealth(
                w["pid"],
                w["state"],
                w["rss_bytes"],
                w["cpu_percent"],
                w["tasks_done"],
                w["task_id"],
            )
            for w in workers or ()
        ),
    )._replace_verdict(judge(state, broken, expected, engine))
