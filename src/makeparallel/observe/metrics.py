"""What ``pool.metrics()``, ``mp.metrics()`` and ``pool.tasks()`` return: frozen snapshots.

Loaded on first use (a program that never reads metrics does not import it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .record import COUNTERS, Tally


@dataclass(frozen=True)
class Timing:
    """Percentiles of the most recent durations, in seconds (0.0 when there are none)."""

    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    count: int = 0  # how many durations the percentiles are taken over

    @classmethod
    def of(cls, values: Iterable[float]) -> Timing:
        ordered = sorted(values)
        if not ordered:
            return cls()
        return cls(
            _rank(ordered, 0.50),
            _rank(ordered, 0.95),
            _rank(ordered, 0.99),
            ordered[-1],
            len(ordered),
        )


def _rank(ordered: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class FunctionMetrics:
    """Counts and recent timings of one function's tasks."""

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    retried: int = 0
    busy_seconds: float = 0.0
    wait: Timing = field(default_factory=Timing)  # queued until started
    run: Timing = field(default_factory=Timing)  # started until ended

    @classmethod
    def of(cls, tally: Tally) -> FunctionMetrics:
        return cls(
            **dict(zip(COUNTERS, tally.counts, strict=True)),
            busy_seconds=tally.busy_seconds,
            wait=Timing.of(tally.waits),
            run=Timing.of(tally.runs),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Metrics:
    """A pool's (or every pool's) counters at one moment.

    Counts are of tasks since the pool was created (a map's chunk is one
    task); ``running`` and ``queued`` are now; ``busy_seconds`` is the sum
    of task run times, so its rate of change divided by ``workers`` is the
    pool's utilisation. ``wait`` and ``run`` are percentiles over the last
    1,024 tasks; ``by_function`` has the same per function (at most 100
    names, the rest under ``"other"``). ``to_dict()`` gives plain JSON data.
    """

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    retried: int = 0
    running: int = 0
    queued: int = 0
    workers: int = 0
    worker_crashes: int = 0
    worker_restarts: int = 0
    busy_seconds: float = 0.0
    wait: Timing = field(default_factory=Timing)
    run: Timing = field(default_factory=Timing)
    by_function: Mapping[str, FunctionMetrics] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["by_function"] = {name: f.to_dict() for name, f in self.by_function.items()}
        return data


def build(
    tally: Tally,
    functions: Mapping[str, Tally],
    *,
    running: int,
    queued: int,
    workers: int,
    crashes: int,
    restarts: int,
) -> Metrics:
    return Metrics(
        **dict(zip(COUNTERS, tally.counts, strict=True)),
        running=running,
        queued=queued,
        workers=workers,
        worker_crashes=crashes,
        worker_restarts=restarts,
        busy_seconds=tally.busy_seconds,
        wait=Timing.of(tally.waits),
        run=Timing.of(tally.runs),
        by_function={name: FunctionMetrics.of(t) for name, t in sorted(functions.items())},
    )


def combine(each: list[Metrics], tallies: list[tuple[Tally, Mapping[str, Tally]]]) -> Metrics:
    """Every pool's metrics as one: counts summed, percentiles over all their windows."""
    total = Tally(None)
    functions: dict[str, Tally] = {}
    for tally, by_name in tallies:
        _add(total, tally)
        for name, part in by_name.items():
            _add(functions.setdefault(name, Tally(None)), part)
    return build(
        total,
        functions,
        running=sum(m.running for m in each),
        queued=sum(m.queued for m in each),
        workers=sum(m.workers for m in each),
        crashes=sum(m.worker_crashes for m in each),
        restarts=sum(m.worker_restarts for m in each),
    )


def _add(into: Tally, part: Tally) -> None:
    into.counts = [a + b for a, b in zip(into.counts, part.counts, strict=True)]
    into.busy_seconds += part.busy_seconds
    into.waits.extend(part.waits)
    into.runs.extend(part.runs)


@dataclass(frozen=True)
class TaskInfo:
    """One task that is queued, running or waiting to retry (``pool.tasks()``)."""

    task_id: int
    name: str
    function: str
    state: str  # "pending" (queued or waiting to retry) or "running"
    worker: str | None  # where the attempt runs ("pid 1234" for a process worker)
    elapsed: float | None  # seconds since this attempt started (None while queued)
    attempts: int
    progress: float | None
    metadata: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["metadata"] = dict(self.metadata)
        return data
