"""Every live pool of this process, and how they end: at ``mp.shutdown()``, at exit, in a fork.

    Pool() --track--> live pools (weak) --at exit--> shutdown(...) with the right deadline
    a pool with work queued or running --busy--> kept alive until that work is done

After a normal end of the program, submitted work finishes (as with
``concurrent.futures``), but a stuck task must not hold the interpreter for
ever: after ``exit_timeout`` it is stopped. After a signal handled by
``install_signal_handlers()``, running work gets until that deadline. After
Ctrl-C or an uncaught error, everything stops at once.

A forked child has copies of its parent's pools but none of their workers or
threads: ``generation`` counts forks, and a pool compares the generation it
was made in (cheaper than ``os.getpid()`` on every submit).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
import weakref
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from . import _settings
from ._task import Task
from .handle import TaskState

if TYPE_CHECKING:
    from .pool import Pool

logger = logging.getLogger("makeparallel")

_live: weakref.WeakSet[Pool] = weakref.WeakSet()
# Pools with work queued, running or waiting to retry: a pool its program no longer
# holds finishes that work before it is collected (and its workers let go).
_busy: set[Pool] = set()
_hook_installed = False
_exiting_on_error = False

#: how many forks this process is from the one that started the program
generation = 0
#: the exit hook has begun: no new work is accepted
exiting = False


class ShutdownSummary:
    """What ``shutdown()`` did to the tasks that had not ended when it was called.

    ``finished``: ran to an end of their own (result, error or timeout);
    ``cancelled``: never started, or were cancelled; ``stopped``: still running
    at the deadline, so stopped; ``still_running``: ``shutdown(wait=False)``
    left them to finish in the background. Immutable; equal when the counts are.
    """

    __slots__ = _COUNTS = ("finished", "cancelled", "stopped", "still_running")
    finished: int
    cancelled: int
    stopped: int
    still_running: int

    def __init__(
        self, finished: int = 0, cancelled: int = 0, stopped: int = 0, still_running: int = 0
    ) -> None:
        counts = (finished, cancelled, stopped, still_running)
        for name, value in zip(self._COUNTS, counts, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ShutdownSummary is immutable: cannot set {name!r}")

    def _counts(self) -> tuple[int, int, int, int]:
        return (self.finished, self.cancelled, self.stopped, self.still_running)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShutdownSummary):
            return NotImplemented
        return self._counts() == other._counts()

    def __hash__(self) -> int:
        return hash(self._counts())

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={v}" for n, v in zip(self._COUNTS, self._counts(), strict=True))
        return f"ShutdownSummary({fields})"

    @classmethod
    def of(cls, tasks: Iterable[Task], stopped: Iterable[Task]) -> ShutdownSummary:
        stopped_ids = {t.id for t in stopped}
        counts = {"finished": 0, "cancelled": 0, "stopped": 0, "still_running": 0}
        for handle in {t.id: t.handle for t in tasks}.values():
            if handle.task_id in stopped_ids and handle.state is not TaskState.CANCELLED:
                counts["stopped"] += 1
            elif handle.state is TaskState.CANCELLED:
                counts["cancelled"] += 1
            elif handle.done():
                counts["finished"] += 1
            else:
                counts["still_running"] += 1
        return cls(**counts)

    def __add__(self, other: ShutdownSummary) -> ShutdownSummary:
        return ShutdownSummary(
            self.finished + other.finished,
            self.cancelled + other.cancelled,
            self.stopped + other.stopped,
            self.still_running + other.still_running,
        )


def track(pool: Pool) -> None:
    global _hook_installed
    _live.add(pool)
    if not _hook_installed:
        _hook_installed = True
        atexit.register(_shutdown_at_exit)
        previous = sys.excepthook

        def note_uncaught(
            kind: type[BaseException], value: BaseException, tb: TracebackType | None
        ) -> None:
            global _exiting_on_error
            _exiting_on_error = True
            previous(kind, value, tb)

        sys.excepthook = note_uncaught


def busy(pool: Pool) -> None:
    """``pool`` has work: keep it alive until it is done, even if its program drops it."""
    _busy.add(pool)


def idle(pool: Pool) -> None:
    _busy.discard(pool)


def live_pools() -> list[Pool]:
    return list(_live)


def _forget_pools_in_child() -> None:
    # A forked process must not shut down, at its exit, the pools of its parent,
    # nor use them.
    global generation
    generation += 1
    _live.clear()
    _busy.clear()


os.register_at_fork(after_in_child=_forget_pools_in_child)


def _shutdown_at_exit() -> None:
    global exiting
    exiting = True
    exit_timeout = _settings.exit_timeout
    graceful_deadline = _settings.graceful_exit_deadline
    normal_deadline = None if exit_timeout is None else time.monotonic() + exit_timeout
    for pool in live_pools():
        if graceful_deadline is not None:
            remaining = max(0.0, graceful_deadline - time.monotonic())
            pool.shutdown(wait=True, cancel_pending=True, timeout=remaining)
        elif _exiting_on_error:
            pool.shutdown(wait=True, cancel_pending=True, timeout=0)
        else:
            left = None if normal_deadline is None else max(0.0, normal_deadline - time.monotonic())
            summary = pool.shutdown(wait=True, timeout=left)
            if summary.stopped:
                logger.warning(
                    "pool %r: %d task(s) still running %s s after the program ended were "
                    "stopped; wait for your results before exiting (handle.result(), "
                    "mp.gather(handles), or a with-block around the pool), or give them "
                    "longer with mp.configure(exit_timeout=...)",
                    pool.name,
                    summary.stopped,
                    exit_timeout,
                )
