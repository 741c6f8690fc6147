"""A pool's counters and recent timings, kept as its tasks move.

Every task of a pool is attached to the pool's ``Recorder`` when it is
queued; from then on its handle tells the recorder each move of its state
machine (``Handle._move``, under the handle's lock). That one place counts
what started, was retried and ended how, keeps the last ``WINDOW`` wait and
run times (per function too), and turns each move into a ``TaskEvent`` when
listeners exist. Reading the numbers (``snapshot``) copies them under the
recorder's lock; percentiles are computed from the copy, outside it.

A map's chunk is one task here: ``submitted`` counts chunks, not items.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .._task import pid_of
from ..handle import Handle, TaskState
from .events import Listener, TaskEvent, dispatcher, global_listeners

_GLOBAL = global_listeners()  # the list mp.add_listener adds to (the same list object)

if TYPE_CHECKING:
    from .._task import Task

WINDOW = 1024  # the wait and run times kept for percentiles (most recent)
FUNCTION_WINDOW = 256  # the same, per function
MAX_FUNCTIONS = 100  # distinct function names counted apart; the rest are "other"
OTHER = "other"

# counters, by index
SUBMITTED, COMPLETED, FAILED, CANCELLED, TIMED_OUT, RETRIED = range(6)
COUNTERS = ("submitted", "completed", "failed", "cancelled", "timed_out", "retried")
_ENDS = {
    TaskState.SUCCEEDED: (COMPLETED, "succeeded"),
    TaskState.FAILED: (FAILED, "failed"),
    TaskState.CANCELLED: (CANCELLED, "cancelled"),
    TaskState.TIMED_OUT: (TIMED_OUT, "timed_out"),
}


class Tally:
    """Counts, busy seconds and recent wait and run times of one pool or one function."""

    __slots__ = ("busy_seconds", "counts", "runs", "waits")

    def __init__(self, window: int | None) -> None:  # (None: keep every time, to combine)
        self.counts = [0] * len(COUNTERS)
        self.busy_seconds = 0.0
        self.waits: deque[float] = deque(maxlen=window)
        self.runs: deque[float] = deque(maxlen=window)

    def copy(self) -> Tally:
        twin = Tally(self.waits.maxlen)
        twin.counts = list(self.counts)
        twin.busy_seconds = self.busy_seconds
        twin.waits.extend(self.waits)
        twin.runs.extend(self.runs)
        return twin


def function_name(fn: object) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}" if module and module != "builtins" else name


_RUNNING, _PENDING = TaskState.RUNNING, TaskState.PENDING


class Recorder:
    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.lock = threading.Lock()
        self.total = Tally(WINDOW)
        self.functions: dict[str, Tally] = {}
        self.listeners: list[Listener] = []  # this pool's (pool.add_listener)
        # a function's code -> (its name, its tally): one lookup per submit
        self._by_code: dict[object, tuple[str, Tally]] = {}
        self._observe = self.moved  # (one bound method for every handle)

    # -- the pool calls these ------------------------------------------------------
    # Kept lean: they run for every task (a lookup, a lock, a few increments);
    # events are made only while some listener exists.

    def attach(self, task: Task) -> None:
        """``task`` was submitted: count it, and follow its handle from now on."""
        handle = task.handle
        fn = task.fn
        code = getattr(fn, "__code__", None)  # (the same code: the same qualified name)
        entry = self._by_code.get(code) if code is not None else None
        if entry is None:
            entry = self._entry(fn, code)
        name, tally = entry
        handle._function = name
        handle._tally = tally
        handle._queued_at = time.monotonic()
        handle._observer = self._observe
        # (the caller holds the pool's queue lock, the one writer of these two counts)
        self.total.counts[SUBMITTED] += 1
        tally.counts[SUBMITTED] += 1
        if self.listeners or _GLOBAL:
            self._send(TaskEvent("submitted", self.pool, handle.task_id, handle.name, name))

    def forget(self, task: Task) -> None:
        """``task`` was withdrawn before it started: as if never submitted (queue lock held)."""
        handle = task.handle
        handle._observer = None
        self.total.counts[SUBMITTED] -= 1
        handle._tally.counts[SUBMITTED] -= 1

    def moved(
        self,
        handle: Handle[Any],
        old: TaskState,
        new: TaskState,
        now: float,
        error: BaseException | None,
    ) -> None:
        """A handle changed state (called under its lock, by ``Handle._move``)."""
        tally: Tally = handle._tally
        total = self.total
        if new is _RUNNING:  # the most frequent move, kept shortest
            wait = now - handle._queued_at
            total.waits.append(wait)  # (a deque's append needs no lock of ours)
            tally.waits.append(wait)
            if self.listeners or _GLOBAL:
                self._event("started", handle, wait, None, None, error)
            return
        if new is _PENDING:  # this attempt failed; another comes
            counter, outcome, kind = RETRIED, None, "retried"
        else:
            (counter, outcome), kind = _ENDS[new], "finished"
        run = waited = None
        if old is _RUNNING:
            started = handle._started_at or now
            run, waited = now - started, max(0.0, started - handle._queued_at)
        with self.lock:
            total.counts[counter] += 1
            tally.counts[counter] += 1
            if run is not None:
                total.busy_seconds += run
                tally.busy_seconds += run
        if run is not None:
            total.runs.append(run)
            tally.runs.append(run)
        if new is _PENDING:
            handle._queued_at = now  # the next attempt waits from now
        if self.listeners or _GLOBAL:
            self._event(kind, handle, waited, run, outcome, error)

    def _event(
        self,
        kind: str,
        handle: Handle[Any],
        wait: float | None,
        run: float | None,
        outcome: str | None,
        error: BaseException | None,
    ) -> None:
        self._send(
            TaskEvent(
                kind,
                self.pool,
                handle.task_id,
                handle.name,
                handle._function,
                handle._attempts,
                pid_of(handle._worker),
                wait,
                run,
                outcome,
                None if error is None else type(error).__name__,
            )
        )

    def worker_event(self, kind: str, pid: int | None, reason: str | None = None) -> None:
        if self.listeners or _GLOBAL:
            self._send(TaskEvent(kind, self.pool, worker_pid=pid, outcome=reason))

    # -- reading ------------------------------------------------------------------------

    def snapshot(self) -> tuple[Tally, dict[str, Tally]]:
        """Copies of the pool's tally and each function's."""
        with self.lock:
            return self.total.copy(), {name: t.copy() for name, t in self.functions.items()}

    # -- inside -------------------------------------------------------------------------

    def _send(self, event: TaskEvent) -> None:
        event = event._replace(time=time.time())
        dispatcher.send(event, (*self.listeners, *global_listeners()))

    def _entry(self, fn: object, code: object) -> tuple[str, Tally]:
        name = function_name(fn)
        with self.lock:
            tally = self.functions.get(name)
            if tally is None:
                if len(self.functions) >= MAX_FUNCTIONS:
                    tally = self.functions.get(OTHER)
                    if tally is None:
                        tally = self.functions[OTHER] = Tally(FUNCTION_WINDOW)
                else:
                    tally = self.functions[name] = Tally(FUNCTION_WINDOW)
        entry = (name, tally)
        if code is not None and len(self._by_code) < 4 * MAX_FUNCTIONS:
            self._by_code[code] = entry
        return entry
