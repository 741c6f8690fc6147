"""What a running task can ask about itself: ``current_task()`` and ``report_progress()``.

The engines set a ``TaskContext`` around every call of the user's function
(in worker processes, worker threads, or inline). Outside a task
``current_task()`` returns ``None`` and ``report_progress()`` raises.

Progress is throttled: at most one update every ``PROGRESS_INTERVAL``
seconds leaves the task, the newest value wins, and the last value is always
delivered before the task's result. A tight loop may therefore call
``report_progress`` as often as it likes.
This module is imported by worker processes: keep it light.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

TYPE_CHECKING = False  # no typing import at run time: workers import this module
if TYPE_CHECKING:
    import threading
    from typing import Any

__all__ = ["TaskContext", "current_task", "report_progress"]

PROGRESS_INTERVAL = 0.02
_monotonic = time.monotonic

ProgressSink = Callable[[float, "str | None"], None]


class _ProgressThrottle:
    """Forwards at most one update per interval; ``flush`` delivers the newest one.

    No lock on purpose: this is on the hot path of tight loops, a task reports
    from one thread, and the worst a racing second thread can do is drop an
    intermediate value (the flush still sends the newest).
    """

    __slots__ = ("_last_sent", "_pending", "_sink")

    def __init__(self, sink: ProgressSink) -> None:
        self._sink = sink
        self._last_sent = 0.0
        self._pending: tuple[float, str | None] | None = None

    def send(self, now: float, value: float, message: str | None) -> None:
        """Deliver ``value`` now (``report_progress`` keeps the newer ones in ``_pending``)."""
        self._last_sent = now
        self._pending = None
        self._sink(value, message)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._sink(*pending)


class _NeverCancelled:
    """The cancel flag of a task in a worker process: it is stopped by killing the process."""

    __slots__ = ()

    def is_set(self) -> bool:
        return False


_NEVER_CANCELLED = _NeverCancelled()


class TaskContext:
    """The running task, as seen from inside it: ``task_id``, ``name``, ``metadata``,
    ``attempt`` (1 for the first try), ``worker`` and ``cancelled()``."""

    __slots__ = ("_cancel", "_progress", "attempt", "metadata", "name", "task_id", "worker")

    def __init__(
        self,
        task_id: int,
        name: str,
        metadata: Mapping[str, Any],
        attempt: int,
        worker: str | None,
        cancel: threading.Event | _NeverCancelled,
        progress: _ProgressThrottle | None,
    ) -> None:
        self.task_id = task_id
        self.name = name
        self.metadata = metadata
        self.attempt = attempt
        self.worker = worker
        self._cancel = cancel
        self._progress = progress

    def __repr__(self) -> str:
        return (
            f"TaskContext(task_id={self.task_id}, name={self.name!r}, attempt={self.attempt}, "
            f"worker={self.worker!r})"
        )

    def cancelled(self) -> bool:
        """True once the task was cancelled or timed out.

        Worker *processes* are stopped outright; a task on a thread (which
        cannot be killed) should check this in its loops and return early.
        """
        return self._cancel.is_set()


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "makeparallel_task", default=None
)


def current_task() -> TaskContext | None:
    """The task this code runs in, or ``None`` when called outside a task."""
    return _current.get()


def report_progress(done: float, total: float | None = None, *, message: str | None = None) -> None:
    """Tell the caller how far the task is: ``report_progress(0.4)`` or ``(40, 100)``.

    The value must be a finite fraction in [0, 1] (or ``0 <= done <= total``).
    It shows as ``handle.progress`` and fires ``handle.on_progress`` callbacks.
    """
    # Tight loops call this a lot: the common cases are checked first, cheaply,
    # and anything unusual goes to _fraction, which accepts it or names the problem.
    if total is None:
        fraction = done
    elif type(total) is int and total > 0:
        try:
            fraction = done / total
        except TypeError:
            fraction = _fraction(done, total)
    else:
        fraction = _fraction(done, total)
    if (type(fraction) is not float and type(fraction) is not int) or not 0 <= fraction <= 1:
        fraction = _fraction(done, total)
    if message is not None and type(message) is not str:
        raise TypeError(f"message must be a string or None, got {type(message).__name__}")
    context = _current.get()
    if context is None:
        raise ValueError(
            "report_progress() was called outside a task: call it from a function run "
            "by @parallel, Pool.submit or a map (a plain call has nobody to report to)"
        )
    throttle = context._progress
    if throttle is not None:
        now = _monotonic()
        if now - throttle._last_sent < PROGRESS_INTERVAL:
            throttle._pending = (fraction, message)
        else:
            throttle.send(now, fraction, message)


def _fraction(done: float, total: float | None) -> float:
    # here, not at the top: worker processes start faster (math loads a shared
    # library, about 1 ms)
    import math
    from numbers import Real

    for label, value in (("done", done), ("total", total)):
        if value is None and label == "total":
            continue
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"report_progress: {label} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"report_progress: {label} must be finite, got {value!r}")
    if total is None:
        if not 0.0 <= done <= 1.0:
            raise ValueError(
                f"report_progress: a fraction must lie in [0, 1], got {done!r}; "
                "pass report_progress(done, total) for counts"
            )
        return float(done)
    if total <= 0:
        raise ValueError(f"report_progress: total must be > 0, got {total!r}")
    if not 0 <= done <= total:
        raise ValueError(f"report_progress: done must lie in [0, total={total!r}], got {done!r}")
    return float(done) / float(total)


def enter(
    task_id: int,
    name: str,
    metadata: Mapping[str, Any],
    attempt: int,
    worker: str | None,
    progress: ProgressSink | None,
    cancel: threading.Event | None = None,
) -> tuple[TaskContext, contextvars.Token[TaskContext | None]]:
    """Engines call this around a task; ``leave`` undoes it."""
    context = TaskContext(
        task_id,
        name,
        MappingProxyType(dict(metadata)),
        attempt,
        worker,
        cancel if cancel is not None else _NEVER_CANCELLED,
        _ProgressThrottle(progress) if progress is not None else None,
    )
    return context, _current.set(context)


def leave(context: TaskContext, token: contextvars.Token[TaskContext | None]) -> None:
    if context._progress is not None:
        context._progress.flush()
    _current.reset(token)
