"""The event stream: one small record for each thing that happens to a task or a worker.

    pool (TaskBook, Handle moves, engine) --> Recorder --> Dispatcher thread --> listeners

Events are made only while some listener exists. Listeners run on one
daemon thread of their own (``makeparallel-events``), never on a thread of a
pool: a slow listener delays only the events behind it, and one that raises
is logged once and called again for later events. Past ``BACKLOG`` events
waiting, new ones are dropped (and counted, and logged once) rather than
letting memory grow without bound.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

logger = logging.getLogger("makeparallel")

BACKLOG = 100_000  # events waiting for listeners before new ones are dropped

#: what an event's ``kind`` may be
KINDS = ("submitted", "started", "retried", "finished", "worker_started", "worker_exited")


class TaskEvent(NamedTuple):
    """One event. Task events carry the task's fields; worker events carry
    ``worker_pid`` and, in ``outcome``, why a worker exited."""

    kind: str  # one of KINDS
    pool: str
    task_id: int | None = None
    name: str | None = None  # the task's name (its function's, unless given)
    function: str | None = None  # the function's qualified name
    attempt: int = 0
    worker_pid: int | None = None
    wait_seconds: float | None = None  # queued until it started (started, finished)
    run_seconds: float | None = None  # how long this attempt ran (retried, finished)
    # finished: succeeded | failed | cancelled | timed_out;
    # worker_exited: crashed | retired | stopped
    outcome: str | None = None
    exception_type: str | None = None  # the exception's class name, when it failed
    time: float = 0.0  # time.time() when it happened


Listener = Callable[[TaskEvent], object]


class Dispatcher:
    """Delivers events to listeners on a thread of its own (one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._drained = threading.Condition(self._lock)
        self._queue: deque[tuple[TaskEvent, tuple[Listener, ...]]] = deque()
        self._busy = False  # the thread is delivering an event taken off the queue
        self._thread: threading.Thread | None = None
        self._failed: set[int] = set()  # ids of listeners whose failure was logged
        self.dropped = 0

    def send(self, event: TaskEvent, listeners: tuple[Listener, ...]) -> None:
        with self._lock:
            if len(self._queue) >= BACKLOG:
                self.dropped += 1
                if self.dropped == 1:
                    logger.warning(
                        "makeparallel's event listeners fall behind (%d events wait): "
                        "dropping new events until they catch up",
                        BACKLOG,
                    )
                return
            self._queue.append((event, listeners))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._deliver, name="makeparallel-events", daemon=True
                )
                self._thread.start()
            self._ready.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event sent so far has been delivered; False at ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._queue or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._drained.wait(remaining)
        return True

    def _deliver(self) -> None:
        while True:
            with self._lock:
                self._busy = False
                if not self._queue:
                    self._drained.notify_all()
                while not self._queue:
                    self._ready.wait()
                event, listeners = self._queue.popleft()
                self._busy = True
            for listener in listeners:
                try:
                    listener(event)
                except BaseException:  # a listener never harms the pool
                    if id(listener) not in self._failed:
                        self._failed.add(id(listener))
                        logger.exception(
                            "event listener %r failed (logged once; it is still called)",
                            listener,
                        )

    def _after_fork(self) -> None:
        """In a forked child: the thread is not there; start afresh."""
        self.__init__()  # type: ignore[misc]


dispatcher = Dispatcher()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=dispatcher._after_fork)

_listeners: list[Listener] = []  # every pool's events (mp.add_listener)


def check_listener(fn: object) -> Listener:
    if not callable(fn):
        raise TypeError(f"a listener must be callable (it gets one TaskEvent), got {fn!r}")
    return fn


def add_listener(fn: Listener) -> Listener:
    """Call ``fn(event)`` for every event of every pool (on the events thread); returns ``fn``."""
    _listeners.append(check_listener(fn))
    return fn


def remove_listener(fn: Listener) -> None:
    """Stop calling ``fn`` (added with ``add_listener``); a no-op if it was not added."""
    try:
        _listeners.remove(fn)
    except ValueError:
        pass


def global_listeners() -> list[Listener]:
    return _listeners


def flush_events(timeout: float | None = None) -> bool:
    """Wait until every event so far reached the listeners; False if ``timeout`` passed."""
    return dispatcher.flush(timeout)
