"""The serial engine: every task runs inline, in order, in the submitting thread.

It exists for tests and debugging: breakpoints, profilers and tracebacks
behave exactly as in plain sequential code.
"""

from __future__ import annotations

import threading

from .._task import Task
from ._inline import run_here
from .base import Backend, Sink


class SerialBackend(Backend):
    kind = "serial"

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._local = threading.local()

    def poke(self) -> None:
        if getattr(self._local, "running", False):
            return  # a task submitted from inside a task runs when the outer one returns
        self._local.running = True
        try:
            while (task := self._sink.take()) is not None:
                self._run(task)
        finally:
            self._local.running = False

    def _run(self, task: Task) -> None:
        ok, value = run_here(task, None)
        self._sink.finished(task, ok, value)
        if not ok and isinstance(value, KeyboardInterrupt | SystemExit):
            raise value

    def close(self, deadline: float | None, wait: bool = True) -> None:
        pass
