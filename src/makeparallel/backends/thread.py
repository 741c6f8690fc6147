"""The thread engine: a fixed set of threads in this process.

For I/O-bound work on any build, and for CPU-bound work on free-threaded
CPython where threads run Python in parallel. A thread cannot be killed:
``stop_task`` only sets the task's cancellation flag (``current_task().cancelled()``)
and the pool drops whatever the task returns later.
"""

from __future__ import annotations

import threading
import time

from .._task import Task
from ._inline import run_here
from .base import Backend, Sink


class ThreadBackend(Backend):
    kind = "thread"

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._wake = threading.Condition()
        self._stopping = False
        self._threads = [
            threading.Thread(
                target=self._loop, name=f"{self.pool_name}-worker-{index}", daemon=True
            )
            for index in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def poke(self) -> None:
        with self._wake:
            self._wake.notify()

    def _loop(self) -> None:
        name = threading.current_thread().name
        while True:
            task = self._sink.take()
            if task is None:
                with self._wake:
                    if self._stopping:
                        return
                    if not self._sink.has_pending():
                        self._wake.wait()
                continue
            task.assign(name)
            ok, value = run_here(task, name)
            self._sink.finished(task, ok, value)

    def stop_task(self, task: Task, error: BaseException) -> bool:
        task.cancel_event.set()  # the task sees current_task().cancelled()
        return False

    def close(self, deadline: float | None, wait: bool = True) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if not wait:
            return
        current = threading.current_thread()
        for thread in self._threads:
            if thread is current:
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
