"""The thread engine: threads of this process, a fixed number or a range.

For I/O-bound work on any build, and for CPU-bound work on free-threaded
CPython where threads run Python in parallel. A thread cannot be killed:
``stop_task`` only sets the task's cancellation flag (``current_task().cancelled()``)
and the pool drops whatever the task returns later.

With min_workers < max_workers, a thread is added while tasks wait and no
thread is idle, and a thread idle for ``idle_timeout`` leaves (never below
the minimum).

A thread whose task was stopped (a timeout, a cancel) but goes on running
is *stuck*: it no longer counts towards the pool's size, a new thread takes
its place at once, ``health()`` reports it, and nothing waits for it at
shutdown. It leaves when its task returns.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import threading
import time

from .._task import Task
from ..errors import BrokenPoolError
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
        self._max = self.workers
        self._min = self.setup.min_workers if self.setup.min_workers is not None else self.workers
        self._count = 0  # threads started and not yet leaving (stuck ones not counted)
        self._idle = 0  # threads waiting for work
        self._running: dict[int, threading.Thread] = {}  # task id -> the thread running it
        self._stuck: set[threading.Thread] = set()  # running a task that was stopped
        for _ in range(self._min):
            self._start_thread()

    def prepare(self, task: Task) -> None:
        # As asyncio.to_thread does: the task sees the submitter's context variables
        # (a request id, an OpenTelemetry span), as they were at submit.
        task.submit_context = contextvars.copy_context()

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._loop, name=f"{self.pool_name}-worker-{next(self._numbers)}", daemon=True
        )
        with self._wake:
            self._count += 1
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def stats(self) -> EngineStats:
        with self._wake:
            return EngineStats(alive=self._count, stuck=len(self._stuck))

    def poke(self) -> None:
        with self._wake:
            if self._idle > 0:
                self._idle -= 1  # that thread is spoken for, even before it wakes up
                self._wake.notify()
                return
            grow = not self._stopping and self._count < self._max and self._sink.has_pending()
        if grow:
            self._start_thread()

    def resize(self, workers: int) -> None:
        with self._wake:
            self._min = self._max = workers
            self.workers = workers
            missing = workers - self._count
            self._idle = 0
            self._wake.notify_all()  # surplus idle threads leave
        for _ in range(max(0, missing)):
            self._start_thread()

    def stop_task(self, task: Task, error: BaseException) -> bool:
        task.cancel_event.set()  # the task sees current_task().cancelled()
        with self._wake:
            thread = self._running.pop(task.id, None)
            if thread is None:
                return False  # it has returned already
            self._stuck.add(thread)
            self._count -= 1
            replace = not self._stopping
        if replace:
            self._start_thread()  # the pool keeps its size while the stuck thread runs on
        return False

    def _leave_if_surplus(self, idle_too_long: bool = False) -> bool:
        """Called with the lock held: whether this thread should end now."""
        if self._count > self._max or (idle_too_long and self._count > self._min):
            self._count -= 1
            return True
        return False

    def _loop(self) -> None:
        me = threading.current_thread()
        name = me.name
        try:
            self.setup.run_initializer()
        except Exception as exc:
            logger.error("initializer of pool %r failed in %s", self.pool_name, name, exc_info=True)
            self._sink.broken(
                BrokenPoolError(
                    f"pool {self.pool_name!r}: its initializer raised {exc!r} in {name}"
                )
            )
            with self._wake:
                self._count -= 1
            return
        done = 0
        while True:
            task = self._sink.take()
            if task is None:
                with self._wake:
                    if self._stopping:
                        self._wake.notify_all()  # after abandon(), which may not have: see there
                        return
                    if self._leave_if_surplus():
                        return
                    if not self._sink.has_pending():
                        self._idle += 1
                        woken = self._wake.wait(self.setup.idle_timeout)
                        if not woken:  # whoever notifies takes this thread off the idle count
                            self._idle -= 1
                            if self._leave_if_surplus(idle_too_long=True):
                                return
                continue
            task.assign(name)
            with self._wake:
                self._running[task.id] = me
            # Each attempt in a copy of its own: a retry starts from the submitter's
            # values, and may run while a stopped attempt is still inside the first.
            context = task.submit_context
            if context is None:
                ok, value = run_here(task, name)
            else:
                ok, value = context.copy().run(run_here, task, name)
            with self._wake:
                stuck = me in self._stuck
                self._stuck.discard(me)
                self._running.pop(task.id, None)
            self._sink.finished(task, ok, value)  # (a stopped task's end is ignored)
            if stuck:
                return  # replaced when its task was stopped
            done += 1
            with self._wake:
                if self._stopping or self._leave_if_surplus():
                    return
            if self.setup.max_tasks is not None and done >= self.setup.max_tasks:
                with self._wake:
                    self._count -= 1
                    stopping = self._stopping
                if not stopping:
                    self._start_thread()  # a fresh thread takes this one's place
                return

    def abandon(self) -> None:
        self._stopping = True
        # Wake the idle threads only if the lock is free (or is this thread's: it is
        # reentrant). Otherwise one of ours holds it, and sees _stopping and wakes the
        # others as it leaves - unless it looked just before the flag was set and is
        # about to wait: then idle threads are left waiting, the cost of taking no lock.
        if self._wake.acquire(blocking=False):
            try:
                self._wake.notify_all()
            finally:
                self._wake.release()

    def close(self, deadline: float | None, wait: bool = True) -> None:
        with self._wake:
            self._stopping = True
            self._idle = 0
            self._wake.notify_all()
        if not wait:
            return
        current = threading.current_thread()
        while True:
            with self._wake:
                # a stuck thread runs a task that was stopped: nobody waits for it
                alive = [
                    t
                    for t in self._threads
                    if t.is_alive() and t is not current and t not in self._stuck
                ]
            if not alive:
                return
            for thread in alive:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
            if deadline is not None and time.monotonic() >= deadline:
                return
