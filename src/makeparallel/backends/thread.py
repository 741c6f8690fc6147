"""The thread engine: a fixed set of threads in this process.

For I/O-bound work on any build, and for CPU-bound work on free-threaded
CPython where threads run Python in parallel. A thread cannot be killed:
``stop_task`` only sets the task's cancellation flag (``current_task().cancelled()``)
and the pool drops whatever the task returns later.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

from .._task import Task
from ..errors import TaskError
from ._inline import run_here
from .base import Backend, EngineStats, Sink

logger = logging.getLogger("makeparallel")


class ThreadBackend(Backend):
    kind = "thread"

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._wake = threading.Condition()
        self._stopping = False
        self._numbers = itertools.count()
        self._threads: list[threading.Thread] = []
        for _ in range(self.workers):
            self._start_thread()

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._loop, name=f"{self.pool_name}-worker-{next(self._numbers)}", daemon=True
        )
        with self._wake:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def stats(self) -> EngineStats:
        with self._wake:
            alive = sum(1 for t in self._threads if t.is_alive())
        return EngineStats(alive=alive)

    def poke(self) -> None:
        with self._wake:
            self._wake.notify()

    def stop_task(self, task: Task, error: BaseException) -> bool:
        task.cancel_event.set()  # the task sees current_task().cancelled()
        return False

    def _loop(self) -> None:
        name = threading.current_thread().name
        try:
            self.setup.run_initializer()
        except Exception as exc:
            logger.error("initializer of pool %r failed in %s", self.pool_name, name, exc_info=True)
            self._sink.broken(
                TaskError(f"pool {self.pool_name!r}: its initializer raised {exc!r} in {name}")
            )
            return
        done = 0
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
            done += 1
            if self.setup.max_tasks is not None and done >= self.setup.max_tasks:
                with self._wake:
                    stopping = self._stopping
                if not stopping:
                    self._start_thread()  # a fresh thread takes this one's place
                return

    def close(self, deadline: float | None, wait: bool = True) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if not wait:
            return
        current = threading.current_thread()
        while True:
            with self._wake:
                alive = [t for t in self._threads if t.is_alive() and t is not current]
            if not alive:
                return
            for thread in alive:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
            if deadline is not None and time.monotonic() >= deadline:
                return
