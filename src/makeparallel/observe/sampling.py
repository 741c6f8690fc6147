"""What a profile measures of each task, and the one switch that turns it on.

    TaskBook.enqueue --sessions? (the one check per task)--> time prepare, task.profile = Sample
    codec.frames:  a sampled task goes out as a TIMED task frame
    worker:        its answer ends with (load, run, dump) seconds (wire.TIMING)
    codec.outcome: takes the timings off, notes when the answer came and was unpickled
    TaskBook.finished --task.profile--> Sample.phases() --> every active Profile

Nothing here runs while no profile is active: ``enqueue`` reads ``sessions``
once per task, and every later step looks only at ``task.profile``, which
stays None. This module is imported with the pool: it must stay small.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol

from .._worker.wire import TIMING

if TYPE_CHECKING:
    from .._task import Task
    from ..backends.base import Backend


class Session(Protocol):
    """An active profile: told of every sampled attempt that ends."""

    def add(self, function: str, chunked: bool, calls: int, phases: tuple[float, ...]) -> None: ...


#: the active profiles (nested ``with mp.profile()`` blocks each get every task)
sessions: list[Session] = []
_lock = threading.Lock()


def start(session: Session) -> None:
    with _lock:
        sessions.append(session)


def stop(session: Session) -> None:
    with _lock:
        if session in sessions:
            sessions.remove(session)


class Sample:
    """The clock readings of one sampled attempt (``time.monotonic`` instants; ``prepare``
    in seconds). A worker process's readings are of the same clock as the parent's."""

    __slots__ = (
        "began",
        "dump_from",
        "ended",
        "loaded",
        "prepare",
        "previous",
        "received",
        "run_from",
    )

    def __init__(self, prepare: float) -> None:
        self.prepare = prepare  # pickling the arguments, in the submitting thread
        self.received = 0.0  # when the answer was in the parent (0: no worker answered)
        self.loaded = 0.0  # when it had been unpickled
        # the worker's: when it ended its previous profiled task, began this one, began
        # running the function, began pickling the result, and ended
        self.previous = self.began = self.run_from = self.dump_from = self.ended = 0.0

    def again(self) -> Sample:
        """The sample of a retry: its arguments were pickled already."""
        return Sample(0.0)

    def answer(self, body: bytearray) -> None:
        """A worker's answer came: take its clock readings off the end of ``body``."""
        self.received = time.monotonic()
        size = TIMING.size
        readings = TIMING.unpack_from(body, len(body) - size)
        self.previous, self.began, self.run_from, self.dump_from, self.ended = readings
        del body[-size:]

    def phases(self, started: float, queued_at: float, ended: float) -> tuple[float, ...]:
        """(queued, arguments, transit, running, returning) seconds of this attempt.

        Time a task spent on its worker behind the one before it (sent ahead)
        counts as queued; transit is the rest of the way out, and the way back.
        """
        queued = max(0.0, started - queued_at)
        if not self.received:  # ran in this process (threads, serial): no shipping
            return (queued, self.prepare, 0.0, max(0.0, ended - started), 0.0)
        free = max(started, min(self.previous, self.began))  # the worker could start it
        queued += free - started
        transit = max(0.0, self.began - free) + max(0.0, self.received - self.ended)
        arguments = self.prepare + (self.run_from - self.began)
        returning = (self.ended - self.dump_from) + max(0.0, self.loaded - self.received)
        return (queued, arguments, transit, self.dump_from - self.run_from, returning)


def prepare(backend: Backend, task: Task) -> None:
    """``backend.prepare(task)``, timed: the task is sampled from now on."""
    began = time.perf_counter()
    backend.prepare(task)
    task.profile = Sample(time.perf_counter() - began)


def finished(task: Task) -> None:
    """A sampled attempt ended with an answer: every active profile gets its phases."""
    sample = task.profile
    handle = task.handle
    started = handle._started_at
    if sample is None or started is None or not sessions:
        return
    phases = sample.phases(started, handle._queued_at, time.monotonic())
    calls = 1 if task.items is None else len(task.items)
    for session in list(sessions):
        session.add(handle._function or task.function_name(), task.items is not None, calls, phases)
