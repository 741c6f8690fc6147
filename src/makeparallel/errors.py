"""The exception family of makeparallel.

A task's *own* exception (a ``ValueError`` raised by the user's function) is
re-raised unchanged by ``Handle.result()``; the classes here describe the
failures that are *not* the user's exception: a timeout, a cancellation, a
dead worker, a value that cannot cross the process boundary.

Every ``TaskError`` reads as one line and keeps the full context in
attributes, so a log line stays short and a handler can still inspect it.
This module must never import the rest of the package: worker processes and
pickled exceptions depend on it alone.
"""

from __future__ import annotations

import concurrent.futures

__all__ = [
    "BrokenPoolError",
    "CircuitOpenError",
    "MemoryLimitError",
    "PoolFullError",
    "RemoteTraceback",
    "SerializationError",
    "TaskCancelledError",
    "TaskError",
    "TaskTimeoutError",
    "WorkerCrashedError",
]


class TaskError(Exception):
    """A task failed for a reason other than its own exception.

    Attributes name the task and where it ran; any of them may be ``None``
    when the failure happened before the task reached a worker.
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: int | None = None,
        task_name: str | None = None,
        function: str | None = None,
        worker_pid: int | None = None,
        attempt: int | None = None,
        args_repr: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.task_id = task_id
        self.task_name = task_name
        self.function = function
        self.worker_pid = worker_pid
        self.attempt = attempt
        self.args_repr = args_repr

    def __str__(self) -> str:
        return self.message


class TaskTimeoutError(TaskError, TimeoutError):
    """The task ran past its deadline and was stopped."""


class TaskCancelledError(TaskError, concurrent.futures.CancelledError):
    """The task was cancelled before it could finish."""


class WorkerCrashedError(TaskError):
    """The worker process running the task died (a crash, a signal, the OOM killer).

    ``exitcode`` is the process's exit status, negative for a signal, or None
    where it was lost (a program that ignores SIGCHLD has its children reaped
    by the system before the pool can read it);
    ``signal_name`` is e.g. ``"SIGKILL"`` when a signal ended it.
    """

    exitcode: int | None = None
    signal_name: str | None = None


class CircuitOpenError(TaskError):
    """The function's circuit breaker is open: the call failed at once without running."""


class SerializationError(TaskError, TypeError):
    """An argument, a function or a result could not be pickled (or unpickled)."""


class MemoryLimitError(TaskError):
    """The task's worker process used more memory than the pool's ``memory_limit``."""


class BrokenPoolError(TaskError, concurrent.futures.BrokenExecutor):
    """The pool cannot run tasks any more: its workers fail to start, or its engine failed.

    Its queued tasks fail with it, and ``submit`` raises it from then on. It
    is a ``concurrent.futures.BrokenExecutor``, as the standard pools' own
    ``BrokenProcessPool`` and ``BrokenThreadPool`` are.
    """


class PoolFullError(RuntimeError):
    """``submit`` found ``max_pending`` tasks already waiting and could not wait longer."""


class RemoteTraceback(Exception):
    """The worker's formatted traceback, attached as ``__cause__`` of a task's exception.

    Printing an uncaught task exception therefore shows where in the worker
    it was raised, followed by where ``result()`` was called.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'
