"""The I/O thread: one wait over every worker, and the only thread that starts or ends one.

    +-- worker 0 <==socket==+
    +-- worker 1 <==socket==+==> Poller (epoll): every worker's socket and pidfd,
    +-- worker N <==socket==+    the wake-up pipe, the fork server's news
                                  |
      commands (any thread) ------+-> run here: start workers, stop a task, retire, resize
                                  +-> frames: ready / progress / answers -> Exchange, then the pool
                                  +-> a worker ends: its one task fails, the tasks behind it
                                      go back in line, a new worker starts
                                  +-> timers: the shutdown deadline, idle workers, memory

What this thread owns: the poller and its handlers, the command queue's
consumer end, the answers waiting to be reported, and the processes
themselves (start, kill, reap). Other threads ask for those through
``call``; what they may do to the workers directly is in ``exchange``.
Answers read in one turn are reported last, just before the thread waits
again: a caller woken by its result then finds the GIL free.

This thread never blocks on a worker, and a failure in it still ends every
task: its last act is to fail the tasks it can no longer finish.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..._task import Task, describe_exit, stopped_at_shutdown, worker_crashed
from ..._worker import wire
from ...errors import BrokenPoolError, TaskError
from . import codec, forward
from .exchange import Exchange
from .launch import Launcher, Started, freeze, kill_tree, reap, thaw
from .memory import INTERVAL as MEMORY_INTERVAL
from .poller import GONE, READ, WRITE, Poller
from .workers import Worker, WorkerState

logger = logging.getLogger("makeparallel")

_MAX_BOOT_FAILURES = 3
_KILLED_FROM_OUTSIDE = (-signal.SIGKILL, -signal.SIGTERM)

Answer = tuple[Task, bool, Any]


_RUNS_TASKS = frozenset({WorkerState.BUSY, WorkerState.CLAIMED})


class Reactor:
    """The I/O thread of one process pool (``IOThread`` for the ``Exchange``)."""

    def __init__(self, pool_name: str, launcher: Launcher) -> None:
        self.pool_name = pool_name
        self.launcher = launcher
        self.ex: Exchange  # attached before start()
        self.poller = Poller()
        self._commands: deque[Callable[[], None]] = deque()
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_closed = False
        self.poller.register(self._wake_r, READ, "wake")
        self._answered: deque[Answer] = deque()
        self._ident: int | None = None
        self._deadline: float | None = None  # close(): kill what still runs at this time
        self._killed_all = False
        self._broken = False
        self._abandoned = False  # the pool was collected: close from this thread
        self._next_memory_check = 0.0
        self._thread = threading.Thread(target=self._run, name=f"{pool_name}-io", daemon=True)

    def start(self, first: Started | None, later: int) -> None:
        """Start the thread; ``first`` is a worker started already, ``later`` how many more."""
        if first is not None:
            self._add_worker(first)
        with self.ex.table.lock:
            self.ex.table.planned += later
        watched = self.launcher.watch()
        if watched is not None:
            # the fork server forks them: each joins as soon as it says it exists
            self.poller.register(watched, READ, "forked")
        else:
            self._commands.append(functools.partial(self._spawn, later, False))
        self._thread.start()
        self._wake_io()

    # -- IOThread: what other threads ask ---------------------------------------

    def current(self) -> bool:
        return threading.get_ident() == self._ident

    def call(self, command: Callable[[], None]) -> None:
        self._commands.append(command)  # deque.append: atomic, no lock needed
        if not self.current():
            self._wake_io()  # after the append: the thread drains the pipe, then the queue

    def wake(self) -> None:
        self._wake_io()

    def watch_writes(self, worker: Worker) -> None:
        self.call(lambda: self._watch_writes(worker))

    def spawn(self, count: int, replacement: bool) -> None:
        self.call(functools.partial(self._spawn, count, replacement))

    def hurry(self) -> None:
        if self.launcher.forking:
            self.launcher.hurry()

    def stop(self, worker: Worker, task: Task, alone: bool) -> None:
        self.call(functools.partial(self._stop, worker, task, alone))

    def close(self, deadline: float | None, wait: bool) -> None:
        with self.ex.table.lock:
            first = not self.ex.closing
            self.ex.closing = True  # from now on no worker is replaced
            if deadline is not None and (self._deadline is None or deadline < self._deadline):
                self._deadline = deadline
        self.call(self.ex.retire_all_idle if first else _nothing)
        if not wait or self.current():
            return
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic()) + 2.0
        self._thread.join(remaining)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def abandon(self) -> None:
        """The pool was collected: close from the I/O thread. Takes no lock but a free one."""
        self._abandoned = True
        if self._wake_lock.acquire(blocking=False):  # held: its holder wakes the thread anyway
            try:
                self._write_wake()
            finally:
                self._wake_lock.release()

    def _wake_io(self) -> None:
        with self._wake_lock:
            self._write_wake()

    def _write_wake(self) -> None:
        if self._wake_closed:
            return  # the I/O thread has ended
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway

    # -- the loop -----------------------------------------------------------------

    def _run(self) -> None:
        self._ident = threading.get_ident()
        ex = self.ex
        try:
            # Only this thread adds or removes workers: it may read the list without the lock.
            while not (ex.closing and not ex.table.all):
                self._report()
                timeout = 0.0 if self._commands else self._timeout()
                for fd, mask in self.poller.poll(timeout):
                    self._on_event(fd, mask)
                self._run_commands()
                self._on_timers()
                if self._abandoned and not ex.closing:
                    self.close(None, wait=False)
        except BaseException as exc:  # a bug here must not leave handles waiting for ever
            logger.critical("makeparallel I/O thread failed", exc_info=True)
            self._give_up(
                BrokenPoolError(f"pool {self.pool_name!r}: its I/O thread failed: {exc!r}")
            )
        finally:
            self._teardown()

    def _on_event(self, fd: int, mask: int) -> None:
        handler = self.poller.handlers.get(fd)
        if handler is None:
            return  # unregistered by an earlier event of this turn
        kind, worker = handler
        if kind == "wake":
            wire.drain_pipe(self._wake_r)
        elif kind == "forked":
            self._take_forked(wait=False)
        elif worker is None:
            return
        elif kind == "pidfd":
            if _ended(fd):  # (not a stale event for a number already given to another worker)
                self._on_exit(worker)
        else:
            if mask & WRITE and self.ex.flush(worker):
                self.poller.modify(fd, READ)
            if mask & (READ | GONE):
                self._read(worker)

    def _run_commands(self) -> None:
        commands = self._commands
        while commands:
            commands.popleft()()

    def _report(self) -> None:
        """Settle the tasks answered since the last call, in the order they were answered."""
        answered = self._answered
        sink = self.ex.sink
        while answered:
            sink.finished(*answered.popleft())

    # -- reading --------------------------------------------------------------------

    def _read(self, worker: Worker) -> None:
        ex = self.ex
        with ex.table.lock:
            if worker.state is WorkerState.CLAIMED:
                return  # readable before its caller took it over: the caller reads
            worker.reading = True
        try:
            try:
                frames, ended = worker.reader.read(worker.sock)
            except OSError:
                frames, ended = [], True
            for kind, task_id, body in frames:
                self._on_frame(worker, kind, task_id, body)
        finally:
            worker.reading = False  # (no lock: a claim that misses this only waits as usual)
        ex.hand_out()  # once for the whole batch, not once per answer
        if ended:
            self._on_exit(worker)

    def _drain(self, worker: Worker) -> None:
        """Read every frame waiting in ``worker``'s socket (it has ended, or is frozen)."""
        with self.ex.table.lock:
            worker.reading = True
        try:
            while True:
                try:
                    frames, ended = worker.reader.read(worker.sock, drain=True)
                except OSError:
                    return
                for kind, task_id, body in frames:
                    self._on_frame(worker, kind, task_id, body)
                if ended or not frames:
                    return
        finally:
            with self.ex.table.lock:
                worker.reading = False

    def _on_frame(self, worker: Worker, kind: int, task_id: int, body: bytearray) -> None:
        ex = self.ex
        if kind in codec.ANSWERS:
            task = ex.take_answer(worker, task_id)
            if task is not None:
                self._answered.append((task, *codec.outcome(task, kind, body, worker.label)))
        elif kind == wire.PROGRESS:
            ex.progress(worker, task_id, body)
        elif kind == wire.LOG:
            forward.deliver_log(body)
        elif kind == wire.OUTPUT:
            forward.deliver_output(body)
        elif kind == wire.READY:
            ex.ready(worker)
            ex.sink.worker_event("worker_started", worker.proc.pid)
        elif kind == wire.SKIPPED:
            ex.skipped(worker, task_id)
        elif kind == wire.BOOT_FAILED:
            with ex.table.lock:
                worker.boot_error = body.decode(errors="replace")
        else:
            logger.error("worker %s sent an unexpected frame %r", worker.label, chr(kind))

    def _watch_writes(self, worker: Worker) -> None:
        with self.ex.table.lock:
            pending = bool(worker.outbox) and worker.state is not WorkerState.CLAIMED
        if pending:
            self.poller.modify(worker.sock.fileno(), READ | WRITE)

    # -- a worker ends -------------------------------------------------------------

    def _on_exit(self, worker: Worker) -> None:
        ex = self.ex
        table = ex.table
        with table.lock:
            if worker.state is WorkerState.CLAIMED or worker not in table.all:
                return  # its caller lets go first (the event comes again), or handled already
        # Whatever the worker wrote before it ended is still in the socket: read it first.
        self._drain(worker)
        with table.lock:
            was = worker.state
            table.leave(worker, WorkerState.GONE)
            table.remove(worker)
            sent = list(worker.inflight)
            worker.inflight.clear()
            head = sent[0] if sent else None
            if head is not None and not worker.booted and head.stop_error is None:
                head = None  # sent while it was starting: it never began
            # Tasks sent behind the one that ran never started: they go first in line.
            behind = [t for t in sent[1 if head else 0 :] if t.stop_error is None]
            table.backlog.extendleft(reversed(behind))
            stopped = was in (WorkerState.RETIRING, WorkerState.STOPPING)
            crashed = not stopped and (head is None or head.stop_error is None)
            if crashed:
                ex.crashes.append(time.monotonic())
                ex.crashes_total += 1
        self._forget(worker)
        returncode = reap(worker.proc)
        self._report()
        if worker.booted:
            reason = (
                "crashed" if crashed else "retired" if was is WorkerState.RETIRING else "stopped"
            )
            ex.sink.worker_event("worker_exited", worker.proc.pid, reason)
        if not ex.closing:
            # First the replacement (it starts sooner), then the news for the task's caller.
            self._replace(worker, was, head, returncode)
        if head is not None:
            error = head.stop_error or worker_crashed(head, worker.label, returncode)
            ex.sink.finished(head, False, error)
        ex.hand_out()

    def _forget(self, worker: Worker) -> None:
        for fd in (worker.sock.fileno(), worker.pidfd):
            if fd is not None and fd >= 0:
                self.poller.unregister(fd)
        worker.sock.close()
        if worker.pidfd is not None:
            os.close(worker.pidfd)

    def _replace(
        self, worker: Worker, was: WorkerState, head: Task | None, returncode: int | None
    ) -> None:
        if not worker.booted:
            self._boot_failed(worker, was, returncode)
            return
        if was is WorkerState.RETIRING:
            logger.debug("worker %s left after %d tasks", worker.label, worker.tasks_done)
            return  # recycled (its replacement is on its way), idle too long, or shrunk
        if was is WorkerState.STOPPING:
            logger.debug("stopped worker %s", worker.label)
        else:
            logger.warning(
                "worker %s %s; starting a new one", worker.label, describe_exit(returncode)[0]
            )
        with self.ex.table.lock:
            self.ex.want_workers(1, replacement=True)

    def _boot_failed(self, worker: Worker, was: WorkerState, returncode: int | None) -> None:
        ex = self.ex
        if was is WorkerState.STOPPING or (
            returncode in _KILLED_FROM_OUTSIDE and not worker.boot_error
        ):
            # Killed while starting (by the pool, an operator or the OOM killer): not a bug.
            with ex.table.lock:
                self.ex.want_workers(1, replacement=True)
            return
        if was is WorkerState.RETIRING:
            return  # told to leave before it was ready (the pool shrank or closed)
        with ex.table.lock:
            ex.boot_failures += 1
            failures = ex.boot_failures
            if failures < _MAX_BOOT_FAILURES:
                self.ex.want_workers(1, replacement=True)
            any_ready = any(w.booted for w in ex.table.all)
        reason = worker.boot_error.strip() or f"it {describe_exit(returncode)[0]}"
        logger.error("worker %s failed to start: %s", worker.label, reason)
        if failures >= _MAX_BOOT_FAILURES and not any_ready:
            self._give_up(
                BrokenPoolError(
                    f"pool {self.pool_name!r}: worker processes fail to start "
                    f"({failures} in a row); the last one said:\n{reason}"
                )
            )

    def _give_up(self, error: BaseException) -> None:
        """No worker can be started: fail what waits, and tell the pool."""
        if self._broken:
            return
        self._broken = True
        with self.ex.table.lock:
            backlog = list(self.ex.table.backlog)
            self.ex.table.backlog.clear()
        for task in backlog:
            self.ex.sink.finished(task, False, error)
        self.ex.sink.broken(error)

    # -- starting workers --------------------------------------------------------------

    def _spawn(self, count: int, replacement: bool) -> None:
        ex = self.ex
        for _ in range(count):
            with ex.table.lock:
                ex.table.planned -= 1
                if ex.closing or self._broken:
                    continue
                if replacement:
                    ex.restarts.append(time.monotonic())
                    ex.restarts_total += 1
            if self.launcher.forking:
                self._take_forked(wait=True)  # the fork server answers in order
            try:
                started = self.launcher.start()
            except OSError as exc:
                self._give_up(
                    BrokenPoolError(f"pool {self.pool_name!r} cannot start a worker process: {exc}")
                )
                return
            self._add_worker(started)
        ex.hand_out()  # a starting worker may hold a task already

    def _take_forked(self, wait: bool) -> None:
        """Add the first workers the fork server has forked by now (all of them, with ``wait``)."""
        server = self.launcher.watch()
        try:
            started, missing = self.launcher.take_forked(wait)
        except OSError as exc:
            self._give_up(
                BrokenPoolError(f"pool {self.pool_name!r} cannot start a worker process: {exc}")
            )
            started, missing = [], 0
        with self.ex.table.lock:
            self.ex.table.planned -= len(started) + missing
            if missing:
                self.ex.want_workers(missing, replacement=False)
        for worker in started:
            self._add_worker(worker)
        if server is not None and self.launcher.watch() is None:
            self.poller.unregister(server)  # all of them are here (or it has gone)
        if started:
            self.ex.hand_out()

    def _add_worker(self, started: Started) -> Worker:
        """Watch a started worker process: its socket, and its pidfd where there is one."""
        index, proc, sock = started
        worker = Worker(index, proc, sock)
        sock.setblocking(False)
        self.poller.register(sock.fileno(), READ, "sock", worker)
        try:
            worker.pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            worker.pidfd = None  # no pidfd here: the socket's end of stream tells instead
        else:
            self.poller.register(worker.pidfd, READ, "pidfd", worker)
        with self.ex.table.lock:
            self.ex.table.add(worker)
        return worker

    # -- stopping ----------------------------------------------------------------------

    def _stop(self, worker: Worker, task: Task, alone: bool) -> None:
        """Kill ``worker`` if it still runs ``task``, harming no other task.

        With tasks queued behind it, the worker is frozen first and its
        answers read: if ``task`` finished meanwhile, the next task may have
        begun, and that one must not be killed, so the worker is thawed.
        """
        table = self.ex.table
        with table.lock:
            if worker.state is not WorkerState.STOPPING:
                return
            running = worker.task is task
        if running and not alone:
            if not freeze(worker.proc):
                return  # it has ended: its exit reports the task
            self._drain(worker)
            with table.lock:
                running = worker.task is task
            if not running:
                thaw(worker.proc)
        if running:
            kill_tree(worker.proc)
        else:
            self.ex.resume(worker)
            self.ex.hand_out()

    # -- timers ------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        ex = self.ex
        now = time.monotonic()
        waits: list[float] = []
        if ex.closing and self._deadline is not None and not self._killed_all:
            waits.append(self._deadline - now)
        expiry = ex.idle_expiry()
        if expiry is not None:
            waits.append(expiry - now)
        if ex.memory.kills and any(w.inflight for w in ex.table.all):
            waits.append(MEMORY_INTERVAL)
        return max(0.0, min(waits)) if waits else None

    def _on_timers(self) -> None:
        ex = self.ex
        now = time.monotonic()
        deadline = self._deadline
        if ex.closing and deadline is not None and not self._killed_all and now >= deadline:
            self._kill_all()
        expiry = ex.idle_expiry()
        if expiry is not None and expiry <= now:
            ex.retire_idle(now)
        if ex.memory.kills:
            self._kill_over_memory(now)

    def _kill_all(self) -> None:
        """The shutdown's deadline has passed: every worker is killed, its tasks stopped.

        The pool stops the same tasks as stragglers; whichever comes first, each
        ends as stopped, never as the crash its worker's death would look like.
        """
        self._killed_all = True
        with self.ex.table.lock:
            workers = [w for w in self.ex.table.all if w.state is not WorkerState.GONE]
            for worker in workers:
                for task in worker.inflight:
                    if task.stop_error is None:
                        task.stop_error = stopped_at_shutdown(task, self.pool_name)
                self.ex.table.leave(worker, WorkerState.STOPPING)
        for worker in workers:
            kill_tree(worker.proc)

    def _kill_over_memory(self, now: float) -> None:
        """memory_limit_action="kill": stop a running task whose worker is over the limit."""
        ex = self.ex
        if now < self._next_memory_check:
            return
        self._next_memory_check = now + MEMORY_INTERVAL
        with ex.table.lock:
            busy = [(w, w.task) for w in ex.table.all if w.state in _RUNS_TASKS and w.task]
        for worker, task in busy:
            assert task is not None
            used = ex.memory.over(worker.proc.pid)
            if used is None:
                continue
            stop = ex.stop_task(task, ex.memory.error(task, worker.label, used))
            if stop is not None:
                self._stop(*stop)

    # -- the end -----------------------------------------------------------------------

    def _teardown(self) -> None:
        # After a normal close no worker is left; after a failure of this thread,
        # the tasks still on workers must end too, or their callers would wait for ever.
        self._report()
        ex = self.ex
        with ex.table.lock:
            workers = list(ex.table.all)
            for worker in workers:
                ex.table.leave(worker, WorkerState.GONE)
            ex.table.all.clear()
            backlog = list(ex.table.backlog)
            ex.table.backlog.clear()
            orphaned = [t for w in workers for t in w.inflight] + backlog
        for worker in workers:
            kill_tree(worker.proc)
            reap(worker.proc)
            self._forget(worker)
        self.poller.close()
        self.launcher.close()
        for task in orphaned:
            ex.sink.finished(
                task,
                False,
                TaskError(
                    f"{task.describe()} was lost: pool {self.pool_name!r} stopped its workers",
                    **task.context(),
                ),
            )
        with self._wake_lock:
            self._wake_closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)


def _ended(pidfd: int) -> bool:
    """Whether the process behind ``pidfd`` has ended (its pidfd is readable)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def _nothing() -> None:
    pass
