"""Modes that run every submitted task in this process instead of its pool's engine.

    Pool.submit / a map chunk --> TaskBook.enqueue --(a mode is on)--> InlineMode.enqueue
                                                                           |
                     now (serial, debug) or at the next wait (deterministic)
                                                                           v
        TaskBook.begin --> SerialBackend.run_attempt --> TaskBook.finished --> the Handle

``makeparallel.testing.serial`` and ``deterministic`` and debug mode
(``MAKEPARALLEL_DEBUG=1``, ``configure(debug=True)``) set
``_settings.inline_mode``; every pool's ``TaskBook`` then hands its tasks
here, whichever engine the pool has, and pools created meanwhile get the
serial engine (no worker starts). The pool's ledger still owns each task's
state - events, metrics, retries, timeouts and circuit breakers behave as
on a real engine - and the serial engine runs the attempts. A retry runs
in the same thread after its back-off, waited on ``_clock`` (a fake clock
makes the wait free).

A deterministic mode holds tasks instead of running them: the held tasks
run, one at a time, in a seeded shuffle of their submission order, when
code waits for any result (``Handle.result()``/``exception()``, ``gather``,
``as_completed``, a map) and when the mode ends.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from . import _clock, _settings
from .backends.serial import SerialBackend

if TYPE_CHECKING:
    from ._task import Task
    from ._tasks import TaskBook
    from .handle import Handle

logger = logging.getLogger("makeparallel")


class InlineMode:
    """Run every task in the calling thread (``seed`` given: held, then run shuffled)."""

    def __init__(self, *, check_pickle: bool, log: bool = False, seed: int | None = None) -> None:
        self.check_pickle = check_pickle
        self._engine = SerialBackend(1, "inline", check_pickle=check_pickle)
        self._log = log
        self._order = None if seed is None else random.Random(seed)
        self._held: list[tuple[TaskBook, Task]] = []
        self._held_lock = threading.Lock()
        self._draining = threading.RLock()  # one drain at a time; a task's own wait may drain

    def enqueue(self, book: TaskBook, task: Task) -> None:
        book.admit(task)
        if self._order is None:
            self._run(book, task)
            return
        task.handle._reader = self._read
        with self._held_lock:
            self._held.append((book, task))

    def before_wait(self) -> None:
        """Code is about to wait for results: run what is held."""
        if self._order is not None:
            self.drain()

    def drain(self) -> None:
        """Run every held task (and those they submit), in the seeded order."""
        if self._order is None:
            return
        with self._draining:
            while True:
                with self._held_lock:
                    batch, self._held = self._held, []
                if not batch:
                    return
                self._order.shuffle(batch)
                for book, task in batch:
                    self._run(book, task)

    def _read(self, handle: Handle[Any], timeout: float | None) -> float | None:
        self.drain()
        return timeout

    def _run(self, book: TaskBook, task: Task | None) -> None:
        while task is not None:
            if not book.begin(task):
                return  # cancelled while it waited
            if self._log:
                logger.info("%s started (attempt %d, inline)", task.describe(), task.attempt)
            started = time.perf_counter()
            ok, value = self._engine.run_attempt(task)
            if self._log:
                outcome = "returned" if ok else f"raised {type(value).__name__}: {value}"
                logger.info(
                    "%s %s after %.3f s", task.describe(), outcome, time.perf_counter() - started
                )
            book.finished(task, ok, value)
            if not ok and isinstance(value, KeyboardInterrupt | SystemExit):
                raise value
            task = book.claim_retry(task)
            if task is not None and task.retry_entry is not None:
                _clock.sleep(max(0.0, task.retry_entry.when - _clock.monotonic()))


_debug_mode: InlineMode | None = None


def debug_mode() -> InlineMode:
    """The mode of ``MAKEPARALLEL_DEBUG=1``: inline, logged, exceptions untouched."""
    global _debug_mode
    if _debug_mode is None:
        _debug_mode = InlineMode(check_pickle=False, log=True)
    return _debug_mode


def set_debug(on: bool) -> None:
    """Turn debug mode on or off (``configure(debug=...)``)."""
    _settings.debug = on
    if on and _settings.inline_mode is None:
        _settings.inline_mode = debug_mode()
    elif not on and _settings.inline_mode is _debug_mode:
        _settings.inline_mode = None
