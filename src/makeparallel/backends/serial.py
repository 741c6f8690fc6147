"""The serial engine: every task runs inline, in order, in the submitting thread.

It exists for tests and debugging: breakpoints, profilers and tracebacks
behave exactly as in plain sequential code. With ``check_pickle`` (what
``makeparallel.testing.serial`` uses) the function, its arguments, its result
and its exception still make the round trip through pickle that a worker
process would impose, so code that would fail in a worker fails here too.
"""

from __future__ import annotations

import traceback
from typing import Any

from .._task import Task, from_remote, unpicklable_arguments, unpicklable_function
from .._worker import serialize
from ..errors import RemoteTraceback, TaskError
from ._inline import run_here
from .base import NO_SETUP, Backend, Sink, WorkerSetup


class SerialBackend(Backend):
    kind = "serial"

    def __init__(
        self,
        workers: int,
        pool_name: str,
        setup: WorkerSetup = NO_SETUP,
        *,
        check_pickle: bool = False,
    ) -> None:
        super().__init__(workers, pool_name, setup)
        self.check_pickle = check_pickle

    def start(self, sink: Sink) -> None:
        self._sink = sink
        try:
            self.setup.run_initializer()
        except Exception as exc:
            raise TaskError(f"pool {self.pool_name!r}: its initializer raised {exc!r}") from exc

    def poke(self) -> None:
        # A task submitted from inside a task runs right there, as a plain call would.
        while (task := self._sink.take()) is not None:
            self._run(task)

    def _run(self, task: Task) -> None:
        ok, value = self.run_attempt(task)
        self._sink.finished(task, ok, value)
        if not ok and isinstance(value, KeyboardInterrupt | SystemExit):
            raise value

    def run_attempt(self, task: Task) -> tuple[bool, Any]:
        """Run one attempt of ``task`` here: ``(True, value)`` or ``(False, exception)``."""
        if not self.check_pickle:
            return run_here(task, None)
        try:
            fn = serialize.loads(serialize.dumps(task.fn))
        except Exception as problem:
            return False, unpicklable_function(task, problem)
        try:
            args, kwargs, items = serialize.loads(
                serialize.dumps((task.args, task.kwargs, task.items))
            )
        except Exception as problem:
            return False, unpicklable_arguments(task, problem)
        copy = Task(fn, args, kwargs, task.handle, items, task.star, task.first_index)
        copy.attempt, copy.id, copy._cancel_event = task.attempt, task.id, task.cancel_event
        ok, value = run_here(copy, None)
        if ok:
            return _value_back(task, value)
        return False, _error_back(task, value)

    def stop_task(self, task: Task, error: BaseException) -> bool:
        task.cancel_event.set()
        return False

    def close(self, deadline: float | None, wait: bool = True) -> None:
        pass


def _value_back(task: Task, value: Any) -> tuple[bool, Any]:
    try:
        return True, serialize.loads(serialize.dumps(value))
    except Exception as problem:
        # the error a worker process reports for a result it cannot send back
        from .._worker.main import remote_error

        return False, from_remote(task, remote_error(problem, "dump", value), "")


def _error_back(task: Task, error: BaseException) -> BaseException:
    """The exception as a worker process would send it back: pickled, traceback as text."""
    if not isinstance(error, Exception):
        return error  # KeyboardInterrupt, SystemExit: the caller's own, never sent
    text = "".join(traceback.format_exception(error))
    try:
        copy: BaseException = serialize.loads(serialize.dumps(error))
    except Exception as problem:
        copy = TaskError(
            f"{task.describe()} raised {type(error).__name__}: {error} (the exception itself "
            f"could not be sent back: {type(problem).__name__}: {problem})",
            **task.context(),
        )
    copy.__cause__ = RemoteTraceback(text)
    return copy
