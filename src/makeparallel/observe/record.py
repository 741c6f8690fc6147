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

from ..handle import Handle, TaskState
from .events import Listener, TaskEvent, dispatcher, global_listeners

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


def worker_pid(handle: Handle[Any]) -> int | None:
    worker = handle._worker
    if worker and worker.startswith("pid "):
        return int(worker[4:])
    return None


class Recorder:
    def __init__(self, pool: str) -> None:
        self.pool = pool
        self.lock = threading.Lock()
        self.total = Tally(WINDOW)
        self.functions: dict[str, Tally] = {}
        self.listeners: list[Listener] = []  # this pool's (pool.add_listener)
        self._names: dict[object, str] = {}  # a function's code -> its name, for speed

    # -- the pool calls these ------------------------------------------------------

    def attach(self, task: Task) -> None:
        """``task`` was submitted: count it, and follow its handle from now on."""
        handle = task.handle
        name = self._name_of(task.fn)
        handle._function = name
        handle._queued_at = time.monotonic()
        handle._observer = self.moved
        with self.lock:
            self.total.counts[SUBMITTED] += 1
            self._tally(name).counts[SUBMITTED] += 1
        if self.listeners or global_listeners():
            self._send(TaskEvent("submitted", self.pool, handle.task_id, handle.name, name))

    def moved(
        self,
        handle: Handle[Any],
        old: TaskState,
        new: TaskState,
        now: float,
        error: BaseException | None,
    ) -> None:
        """A handle changed state (called under its lock, by ``Handle._move``)."""
        wait = run = None
        if new is TaskState.RUNNING:
            wait = now - handle._queued_at
            with self.lock:
                tally = self._tally(handle._function)
                self.total.waits.append(wait)
                tally.waits.append(wait)
            kind, outcome = "started", None
        elif new is TaskState.PENDING:  # this attempt failed; another comes
            run = now - (handle._started_at or now)
            handle._queued_at = now
            with self.lock:
                for each in (self.total, self._tally(handle._function)):
                    each.counts[RETRIED] += 1
                    each.busy_seconds += run
                    each.runs.append(run)
            kind, outcome = "retried", None
        else:
            counter, outcome = _ENDS[new]
            if old is TaskState.RUNNING:
                run = now - (handle._started_at or now)
            with self.lock:
                tally = self._tally(handle._function)
                for each in (self.total, tally):
                    each.counts[counter] += 1
                    if run is not None:
                        each.busy_seconds += run
                        each.runs.append(run)
            kind = "finished"
        if self.listeners or global_listeners():
            self._send(
                TaskEvent(
                    kind,
                    self.pool,
                    handle.task_id,
                    handle.name,
                    handle._function,
                    handle._attempts,
                    worker_pid(handle),
                    wait,
                    run,
                    outcome,
                    None if error is None else type(error).__name__,
                )
            )

    def worker_event(self, kind: str, pid: int | None, reason: str | None = None) -> None:
        if self.listeners or global_listeners():
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

    def _name_of(self, fn: object) -> str:
        code = getattr(fn, "__code__", None)  # (the same code: the same qualified name)
        name = self._names.get(code) if code is not None else None
        if name is None:
            name = function_name(fn)
            if code is not None and len(self._names) < 4 * MAX_FUNCTIONS:
                self._names[code] = name
        return name

    def _tally(self, name: str) -> Tally:
        """Called with the lock held."""
        tally = self.functions.get(name)
        if tally is None:
            if len(self.functions) >= MAX_FUNCTIONS:
                name = OTHER
                tally = self.functions.get(OTHER)
            if tally is None:
                tally = self.functions[name] = Tally(FUNCTION_WINDOW)
        return tally
