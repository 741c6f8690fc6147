"""Tasks out to workers, answers back: what any thread may do to the worker table.

    submitting thread --hand_out--+                       +--take_answer-- I/O thread
    I/O thread (after answers) ---+--> WorkerTable <------+
    caller reading its answer ----+    (one lock)         +--take_answer-- caller (claims)

Three kinds of thread act on the workers: a thread that submits (it wakes
an idle worker with its task), the I/O thread (it reads answers, fills busy
workers' queues, and alone starts, kills and reaps processes) and a caller
waiting in ``result()`` that reads its own answer (``claims``). Each step
here takes the table lock once, decides with ``dispatch``, moves workers
through ``workers.move`` and ends; what only the I/O thread may do it asks
for through ``IOThread.call``.

Nothing loops without progress: each turn of ``hand_out`` either sends a
task, which leaves the queue, or finds a worker's socket broken, which takes
that worker out of the running for good (it is GONE), or ends.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..._memory import cpu_seconds, resident_bytes
from ..._task import Task
from ..._worker import serialize, wire
from ..base import Sink, WorkerSetup
from . import codec
from .dispatch import MAX_AHEAD, Pace, choose, ready_count, room, take_batch
from .memory import MemoryGuard
from .workers import SENDABLE, Worker, WorkerState, WorkerTable, move

logger = logging.getLogger("makeparallel")

_HISTORY = 60.0  # seconds of crash and restart history kept for health()


class IOThread(Protocol):
    """What the other threads may ask of the I/O thread."""

    def current(self) -> bool:
        """Whether the calling thread is the I/O thread."""

    def call(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the I/O thread, soon."""

    def wake(self) -> None:
        """Make the I/O thread look at its timers again."""

    def watch_writes(self, worker: Worker) -> None:
        """Finish a partial write to ``worker`` when its socket has room."""

    def spawn(self, count: int, replacement: bool) -> None:
        """Start ``count`` more workers, counted in ``planned`` already (``want_workers``)."""

    def hurry(self) -> None:
        """A task waits for a worker: start the ones on their way now."""

    def stop(self, worker: Worker, task: Task, alone: bool) -> None:
        """Kill ``worker`` if it still runs ``task`` (see ``stop_task``)."""


class Exchange:
    def __init__(
        self, sink: Sink, setup: WorkerSetup, workers: int, memory: MemoryGuard, io: IOThread
    ) -> None:
        self.sink = sink
        self.setup = setup
        self.table = WorkerTable()
        self.pace = Pace()
        self.memory = memory
        self.io = io
        self.most = workers
        self.least = setup.min_workers if setup.min_workers is not None else workers
        self.closing = False  # no worker is replaced or added from now on
        self.presend = setup.initializer is None  # a starting worker may hold one task
        self.one_at_a_time = setup.memory_limit is not None  # memory is checked between tasks
        self.crashes: deque[float] = deque()  # when workers died unexpectedly
        self.restarts: deque[float] = deque()  # when replacement workers were started
        self.crashes_total = 0  # since the pool began
        self.restarts_total = 0
        self.boot_failures = 0  # workers in a row that failed to start

    # -- handing out work (any thread) --------------------------------------------

    def hand_out(self) -> None:
        """Send waiting work to workers with room, until there is none or no room is left."""
        table = self.table
        from_io = self.io.current()
        while True:
            with table.lock:
                if not (table.backlog or self.sink.has_pending()):
                    return
                ahead = 1 if self.one_at_a_time else self.pace.ahead
                worker = choose(
                    table.all,
                    table.idle,
                    ahead=ahead,
                    presend=self.presend,
                    from_io=from_io,
                    max_tasks=self.setup.max_tasks,
                )
                if worker is None:
                    self._grow_locked()
                    waiting = True
                else:
                    count = room(
                        worker,
                        ahead=ahead,
                        allowance=self._allowance(worker),
                        one_at_a_time=self.one_at_a_time,
                        waiting=lambda: self.sink.pending_count() + len(table.backlog),
                        ready=lambda: ready_count(table.all),
                    )
                    first_may_be_timed = worker.state is WorkerState.IDLE
                    tasks = take_batch(table.backlog, self.sink, count, first_may_be_timed)
                    if not tasks:
                        return  # the next task has a timeout: it waits for an idle worker
                    self._send_locked(worker, tasks)
                    waiting = False
            if waiting:
                self.io.hurry()
                return

    def _allowance(self, worker: Worker) -> int:
        """How many more tasks ``worker`` may be sent before it is recycled."""
        limit = self.setup.max_tasks
        return MAX_AHEAD if limit is None else limit - worker.sent

    def _send_locked(self, worker: Worker, tasks: list[Task]) -> None:
        """Write ``tasks`` to ``worker``, which from now on owes an answer for each."""
        table = self.table
        table.busy(worker)
        if not worker.inflight:
            worker.head_since = time.monotonic()
        worker.inflight.extend(tasks)
        worker.sent += len(tasks)
        for task in tasks:
            task.assign(worker.label)
        if not self._write_locked(worker, codec.frames(tasks, worker.functions)):
            # Its socket is broken: the worker has died. These tasks never reached it.
            for task in tasks:
                worker.inflight.remove(task)
            table.backlog.extendleft(reversed(tasks))
        elif self.memory.kills and not self.io.current():
            self.io.wake()  # the I/O thread may sleep without a timeout: memory is checked there

    def _write_locked(self, worker: Worker, buffers: list[wire.Buffer]) -> bool:
        """Write or queue ``buffers``; False (and the worker is GONE) if its socket is broken."""
        if worker.outbox:  # an earlier write is unfinished: queue behind it
            worker.outbox += buffers
            return True
        try:
            rest = wire.send_some(worker.sock, buffers)
        except OSError:
            self.table.leave(worker, WorkerState.GONE)  # the I/O thread cleans up on its exit
            return False
        if rest:
            worker.outbox = rest
            self.io.watch_writes(worker)
        return True

    def broadcast(self, buffers: list[wire.Buffer]) -> None:
        """Send the same frame to every worker that still reads its socket."""
        with self.table.lock:
            for worker in list(self.table.all):
                if worker.state in SENDABLE or worker.state is WorkerState.CLAIMED:
                    self._write_locked(worker, list(buffers))

    def flush(self, worker: Worker) -> bool:
        """I/O thread: send more of a partial write; True when it is all sent."""
        with self.table.lock:
            if worker.state is WorkerState.GONE:
                return True
            try:
                worker.outbox = wire.send_some(worker.sock, worker.outbox)
            except OSError:
                worker.outbox = []
                self.table.leave(worker, WorkerState.GONE)
            return not worker.outbox

    def _grow_locked(self) -> None:
        """Start workers for tasks that wait, up to the maximum (min_workers < max_workers)."""
        if self.closing or self.least == self.most:
            return
        live = self.table.live()
        starting = sum(1 for w in live if w.state is WorkerState.STARTING)
        coming = starting + self.table.planned
        wanted = min(self.sink.pending_count() - coming, self.most - len(live) - self.table.planned)
        if wanted > 0:
            self.want_workers(wanted, replacement=False)

    # -- answers (the I/O thread, or a caller reading its own) ---------------------

    def ready(self, worker: Worker) -> None:
        """``worker`` said it is ready."""
        with self.table.lock:
            worker.booted = True
            self.boot_failures = 0
            if worker.state is not WorkerState.STARTING:
                return  # stopping or retiring already
            if worker.inflight:
                worker.head_since = time.monotonic()  # its first task starts now
                move(worker, WorkerState.BUSY)
            else:
                self.free_locked(worker)

    def take_answer(self, worker: Worker, task_id: int) -> Task | None:
        """Take the task ``worker`` answered off it (None if it is not the one running)."""
        with self.table.lock:
            task = worker.task
            if task is None or task.id != task_id:
                logger.error("worker %s answered for unknown task %s", worker.label, task_id)
                return None
            worker.inflight.popleft()
            worker.tasks_done += 1
            now = time.monotonic()
            self.pace.observe(now - worker.head_since)
            worker.head_since = now  # the next task in its queue starts now
            if not worker.inflight and worker.state is WorkerState.BUSY:
                self.free_locked(worker)
        self.io.hurry()  # the first answer: the other first workers may be forked now
        return task

    def skipped(self, worker: Worker, task_id: int) -> None:
        """``worker`` dropped a task cancelled while it waited there (the pool ended it)."""
        with self.table.lock:
            for task in worker.inflight:
                if task.id == task_id:
                    worker.inflight.remove(task)
                    break
            if not worker.inflight and worker.state is WorkerState.BUSY:
                self.free_locked(worker)

    def progress(self, worker: Worker, task_id: int, body: bytearray) -> None:
        """A PROGRESS frame: the running task's handle gets the value (and runs its callbacks)."""
        with self.table.lock:
            running = worker.task
        if running is not None and running.id == task_id:
            value, message = serialize.loads(body)
            running.handle._set_progress(value, message)

    def free_locked(self, worker: Worker) -> None:
        """``worker`` has no task left: it rests, or leaves (recycled, shrunk, closing)."""
        limit = self.setup.max_tasks
        if self.closing:
            self.retire_locked(worker)
        elif (limit is not None and worker.tasks_done >= limit) or self.memory.should_recycle(
            worker.proc.pid, worker.label
        ):
            self.retire_locked(worker)
            self.want_workers(1, replacement=True)  # its replacement takes its place once ready
        elif len(self.table.all) > self.most and len(self.table.live()) > self.most:
            # the pool was resized down (the first test is the cheap one)
            self.retire_locked(worker)
        else:
            self.table.rest(worker, time.monotonic())

    def want_workers(self, count: int, replacement: bool) -> None:
        """Called with the lock held: ``count`` more workers, started by the I/O thread.

        ``replacement``: each takes the place of one that left (counted in health()).
        """
        self.table.planned += count
        self.io.spawn(count, replacement)

    def retire_locked(self, worker: Worker) -> None:
        """Ask a worker with no task to exit: it reads the end of its stream and leaves."""
        self.table.leave(worker, WorkerState.RETIRING)
        try:
            worker.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def retire_all_idle(self) -> None:
        """The pool is closing: workers with no task leave now, busy ones once done."""
        with self.table.lock:
            for worker in list(self.table.all):
                if worker.state is WorkerState.IDLE or (
                    worker.state is WorkerState.STARTING and not worker.inflight
                ):
                    self.retire_locked(worker)

    def apply_size(self) -> None:
        """Start or retire workers until there are as many as wanted (``resize``)."""
        with self.table.lock:
            if self.closing:
                return
            live = self.table.live()
            missing = self.least - len(live) - self.table.planned
            surplus = len(live) - self.most
            for worker in list(self.table.idle)[: max(0, surplus)]:
                self.retire_locked(worker)
            if missing > 0:
                self.want_workers(missing, replacement=False)

    def idle_expiry(self) -> float | None:
        """When the longest-idle worker should leave (idle_timeout), if one should."""
        timeout = self.setup.idle_timeout
        if timeout is None or self.closing:
            return None
        with self.table.lock:
            if not self.table.idle or len(self.table.live()) <= self.least:
                return None
            return min(w.idle_since for w in self.table.idle) + timeout

    def retire_idle(self, now: float) -> None:
        """Retire workers idle longer than idle_timeout, never going below the minimum."""
        assert self.setup.idle_timeout is not None
        cutoff = now - self.setup.idle_timeout
        with self.table.lock:
            spare = len(self.table.live()) - self.least
            leaving = sorted(
                (w for w in self.table.idle if w.idle_since <= cutoff), key=lambda w: w.idle_since
            )[: max(0, spare)]
            for worker in leaving:
                self.retire_locked(worker)

    # -- stopping a task (any thread; the I/O thread does the killing) -------------

    def stop_task(self, task: Task, error: BaseException) -> tuple[Worker, Task, bool] | None:
        """Make sure ``task`` does not run on, reporting ``error`` for it if it does.

        Returns what the I/O thread's ``stop`` needs: the worker to stop, the
        task, and whether the task is all that worker has (then killing it
        harms no other task); or None
        when nothing more is needed: the task was in the backlog, waited behind
        another one (its worker skips it), or is not on any worker.
        """
        table = self.table
        with table.lock:
            if task in table.backlog:
                table.backlog.remove(task)
                return None
            worker = table.holding(task)
            if worker is None:
                return None
            task.stop_error = error
            if worker.inflight[0] is not task:
                # It waits behind the running task: the worker skips it (and says so).
                if worker.state in SENDABLE:
                    self._write_locked(worker, codec.cancel_frame(task))
                return None
            if worker.state in (WorkerState.STOPPING, WorkerState.GONE):
                return None  # being stopped already, or dead: its exit reports the task
            alone = len(worker.inflight) == 1 or worker.state is WorkerState.STARTING
            table.leave(worker, WorkerState.STOPPING)  # from now on nothing is sent to it
        return worker, task, alone

    def resume(self, worker: Worker) -> None:
        """I/O thread: a worker frozen to stop a task that had already finished goes on."""
        with self.table.lock:
            if worker.state is not WorkerState.STOPPING:
                return
            if worker.inflight:
                move(worker, WorkerState.BUSY)
            else:
                self.free_locked(worker)

    # -- what the pool reads ---------------------------------------------------------

    def history(self) -> tuple[int, int]:
        """Restarts and crashes in the last minute; called with the lock held."""
        horizon = time.monotonic() - _HISTORY
        for events in (self.crashes, self.restarts):
            while events and events[0] < horizon:
                events.popleft()
        return len(self.restarts), len(self.crashes)

    def describe_workers(self) -> list[dict[str, Any]]:
        """One record per worker; its memory and CPU read from /proc (or psutil)."""
        with self.table.lock:
            workers = [w for w in self.table.all if w.state is not WorkerState.GONE]
            described: list[dict[str, Any]] = [
                {
                    "pid": w.proc.pid,
                    "state": w.state.value,
                    "tasks_done": w.tasks_done,
                    "task_id": w.task.id if w.task is not None else None,
                    "queued": max(0, len(w.inflight) - 1),
                }
                for w in workers
            ]
        for worker, record in zip(workers, described, strict=True):
            record["rss_bytes"] = resident_bytes(worker.proc.pid)
            record["cpu_percent"] = _cpu_percent(worker)
        return described


def _cpu_percent(worker: Worker) -> float | None:
    """Its CPU use since the last time it was described (the first time: since it began)."""
    used = cpu_seconds(worker.proc.pid)
    if used is None:
        return None
    now = time.monotonic()
    when, before = worker.cpu_sample or (worker.started_at, 0.0)
    worker.cpu_sample = (now, used)
    elapsed = now - when
    return round(100.0 * (used - before) / elapsed, 1) if elapsed > 0 else 0.0
