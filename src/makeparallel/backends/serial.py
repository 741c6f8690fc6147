"""The serial engine: every task runs inline, in order, in the submitting thread.

It exists for tests and debugging: breakpoints, profilers and tracebacks
behave exactly as in plain sequential code.
"""

from __future__ import annotations

from .._task import Task
from ..errors import TaskError
from ._inline import run_here
from .base import Backend, Sink


class SerialBackend(Backend):
    kind = "serial"

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
        ok, value = run_here(task, None)
        self._sink.finished(task, ok, value)
        if not ok and isinstance(value, KeyboardInterrupt | SystemExit):
            raise value

    def stop_task(self, task: Task, error: BaseException) -> bool:
        task.cancel_event.set()
        return False

    def close(self, deadline: float | None, wait: bool = True) -> None:
        pass
