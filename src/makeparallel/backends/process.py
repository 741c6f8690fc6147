"""The process engine: makeparallel's own worker loop, one socket per worker.

    submitting thread --prepare (pickle)--> Pool queue
                                               |
        poke / worker free: take() ------------+
              |
              v   non-blocking send (any thread; the I/O thread finishes partial writes)
      +-- worker 0 <==socket==+
      +-- worker 1 <==socket==+==> I/O thread: one selector over every socket,
      +-- worker N <==socket==+    every worker's pidfd and a wake-up pipe
                                   |
                                   +-> frames: ready / result / error -> Sink.finished
                                   +-> a worker exits -> its one task fails, a new worker starts

Short tasks are sent *ahead*: while a worker runs one task, up to a few
milliseconds' worth of further tasks wait in its socket, so it never sits
idle for a round trip to the parent. How many go ahead follows the measured
time between a worker's answers (``_ahead``). A worker answers its tasks in
the order it got them, so the parent always knows which one is running: the
oldest unanswered one. Tasks with a timeout are never sent ahead (their
clock starts when they are handed out); when a worker dies, the tasks queued
behind its running one go back to the front of the line, and a task
cancelled while it waits in a worker's socket is skipped by that worker.

A caller blocked in ``result()`` on a task that is all its worker has reads
that worker's answer itself (``read_here``): the I/O thread leaves the
socket alone meanwhile, which saves its wake-up and the hand-over.

Why our own loop and not ``ProcessPoolExecutor``: the parent must be able to
kill and replace *one* worker (timeout, cancel, crash) without breaking the
pool, and know exactly which task a dead worker was running.

Workers are started with ``subprocess`` (fork + exec of a fresh interpreter),
never with a bare ``fork()`` of this process once the pool has its I/O thread:
forking a multi-threaded process can deadlock the child (Python 3.12+ warns
about it). A fresh interpreter also never re-imports the user's ``__main__``;
what is defined there travels by value (cloudpickle). With ``start="fork"``
the pool forks before it starts that thread (``_forkserver``).

Every worker holds the read end of one "lifeline" pipe whose write end only
this process has. When this process dies - even by SIGKILL - the kernel
closes that end, the worker's watchdog thread reads EOF and the worker exits.
This module must never block the I/O thread on a worker.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import _serialize, _wire
from .. import pool as _pool_settings
from .._memory import describe as describe_size
from .._memory import private_bytes, resident_bytes
from .._process_tree import can_list_children, kill_all, stop_descendants
from .._task import (
    Task,
    describe_exit,
    from_remote,
    unpicklable_arguments,
    unpicklable_function,
    worker_crashed,
)
from ..errors import MemoryLimitError, SerializationError, TaskError
from ._forkserver import (
    ForkedProcess,
    ForkServer,
    ForkServerGone,
    fork_worker,
    wait_for_child,
)
from .base import Backend, EngineStats, Sink

logger = logging.getLogger("makeparallel")

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[3]); "
    "from makeparallel._worker import main; main(int(sys.argv[1]), int(sys.argv[2]))"
)
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_MAX_BOOT_FAILURES = 3
_MEMORY_CHECK_INTERVAL = 0.1  # seconds between memory checks of running tasks
_KILLED_FROM_OUTSIDE = (-signal.SIGKILL, -signal.SIGTERM)
_REAP_GRACE = 5.0
_AHEAD_SECONDS = 0.005  # queue about this much work behind a worker's running task
_MAX_AHEAD = 64  # tasks on one worker at once, running one included
_SMOOTHING = 0.2  # weight of the newest sample in the mean time per task
_OUTLIER = 10.0  # a sample counts as at most this many times the mean
_CACHE_SIZE = 256  # pickled functions and task contexts kept for reuse
_ANSWERS = frozenset({_wire.RESULT, _wire.ERROR, _wire.CHUNK_RESULT})
_READ_HERE_SLICE = 0.05  # seconds: how often a caller reading its own answer looks around

_lifeline_lock = threading.Lock()
_lifeline: tuple[int, int] | None = None


def _lifeline_read_end() -> int:
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = os.pipe()  # both ends non-inheritable; only workers get the read end
        return _lifeline[0]


def _drop_lifeline_in_child() -> None:
    # A forked child must not keep the parent's workers alive, nor share its lifeline.
    global _lifeline
    if _lifeline is not None:
        for fd in _lifeline:
            try:
                os.close(fd)
            except OSError:
                pass
    _lifeline = None


os.register_at_fork(after_in_child=_drop_lifeline_in_child)


_Process = subprocess.Popen[bytes] | ForkedProcess
_Started = tuple[int, _Process, socket.socket]  # a worker's index, process and socket


class _Worker:
    __slots__ = (
        "boot_error",
        "claimed",
        "dead",
        "exit_pending",
        "head_since",
        "idle_since",
        "index",
        "inflight",
        "io_reading",
        "label",
        "outbox",
        "pidfd",
        "proc",
        "reader",
        "ready",
        "retiring",
        "sent",
        "sock",
        "tasks_done",
    )

    def __init__(self, index: int, proc: _Process, sock: socket.socket) -> None:
        self.index = index
        self.proc = proc
        self.sock = sock
        self.pidfd: int | None = None
        self.reader = _wire.FrameReader()
        self.outbox: list[_wire.Buffer] = []
        self.ready = False
        self.dead = False
        self.inflight: deque[Task] = deque()  # sent, not answered; the first one runs
        self.head_since = 0.0  # when the running task started (as far as the parent knows)
        self.sent = 0
        self.label = f"pid {proc.pid}"
        self.boot_error = ""
        self.tasks_done = 0
        self.retiring = False  # leaving: recycled, idle too long, or the pool shrank
        self.idle_since = 0.0
        self.claimed = False  # a caller reads this worker's answer itself (read_here)
        self.io_reading = False  # the I/O thread is reading (and handling) its frames
        self.exit_pending = False  # it exited while claimed: the I/O thread handles it after

    @property
    def task(self) -> Task | None:
        """The task this worker is running, if any."""
        return self.inflight[0] if self.inflight else None


class ProcessBackend(Backend):
    kind = "process"

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._initializer: bytes | None = None
        if self.setup.initializer is not None:
            try:
                self._initializer = _serialize.dumps((self.setup.initializer, self.setup.initargs))
            except Exception as problem:
                raise SerializationError(
                    f"pool {self.pool_name!r}: its initializer or initargs cannot be sent to "
                    f"worker processes ({type(problem).__name__}: {problem}); define the "
                    "initializer at module level and pass plain data"
                ) from problem
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._commands: deque[Callable[[], None]] = deque()
        self._wake_closed = False
        self._abandoned = False  # the pool was collected (abandon): close from the I/O thread
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._backlog: deque[Task] = deque()
        self._next_index = 0
        self._boot_failures = 0
        # Between min and max workers: grow while tasks wait, shrink when idle.
        self._max = self.workers
        self._min = self.setup.min_workers if self.setup.min_workers is not None else self.workers
        self._crashes: deque[float] = deque()  # when workers died unexpectedly
        self._restarts: deque[float] = deque()  # when replacement workers were started
        self._closing = False
        self._deadline: float | None = None
        self._killed_all = False
        self._broken = False
        self._io_ident: int | None = None
        self._planned = 0  # workers asked for but not yet started
        self._next_memory_check = 0.0
        self._functions: dict[int, tuple[Callable[..., Any], bytes]] = {}
        self._mean_task: float | None = None  # seconds between a worker's answers
        self._last_quick = False  # whether the latest of those took under SPIN_SECONDS
        self._ahead = 1  # tasks per worker at once; more than 1 once tasks prove short
        self._hand_out_later = False  # I/O thread: a hand-out waits for the end of a batch
        self._answered: deque[tuple[Task, bool, Any]] = deque()  # I/O thread: to report
        self._fork_server: ForkServer | None = None
        self._forking: list[tuple[int, socket.socket]] = []  # other first workers, on their way
        if self.setup.start == "fork":
            worker = self._add_worker(self._fork_now())
            if self._initializer is None:
                # A forked worker is running Python already: its first task can wait in
                # its socket while it finishes starting, rather than in the pool's queue.
                worker.idle_since = time.monotonic()
                self._idle.append(worker)
        # a forked worker shares its parent's pages until it writes to them
        self._memory_of = private_bytes if self._fork_server else resident_bytes
        self._thread = threading.Thread(target=self._loop, name=f"{self.pool_name}-io", daemon=True)
        self._thread.start()
        self._call(self._spawn_all)

    def _fork_now(self) -> _Started:
        """start="fork": fork all this pool needs before it has a thread of its own.

        Returns the first worker, forked from here; the fork server forks the others.
        """
        channels = [self._new_channel() for _ in range(self._min)]
        lifeline = _lifeline_read_end()
        first: ForkedProcess | None = None
        try:
            first = fork_worker(channels[0][2].fileno(), lifeline)
            others = [child.fileno() for _, _, child in channels[1:]]
            self._fork_server = ForkServer(others, lifeline)
        except BaseException:  # fork failed (no memory, too many processes): leave nothing
            if first is not None:
                with contextlib.suppress(OSError):
                    first.kill()
                _reap(first)
            for _, sock, _ in channels:
                sock.close()
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        finally:
            for _, _, child in channels:
                child.close()
        self._forking = [(index, sock) for index, sock, _ in channels[1:]]
        self._planned = len(self._forking)
        index, sock, _ = channels[0]
        return index, first, sock

    # -- called from any thread -------------------------------------------

    def prepare(self, task: Task) -> None:
        if task.fn_data is None:
            task.fn_data = self._function_bytes(task)
        try:
            if task.items is not None:
                payload: object = (task.star, task.items)
            else:
                # large bytes arguments travel out of band, as arrays do by themselves
                args = tuple(map(_serialize.out_of_band, task.args))
                kwargs = {k: _serialize.out_of_band(v) for k, v in task.kwargs.items()}
                payload = (args, kwargs)
            task.args_data = _wire.blob(*_serialize.dumps_with_buffers(payload))
        except Exception as problem:
            raise unpicklable_arguments(task, problem) from problem
        metadata = task.handle.metadata
        if not metadata:
            task.ctx_data = _plain_context(task.handle.name)
            return
        try:
            task.ctx_data = _serialize.dumps((task.handle.name, dict(metadata)))
        except Exception as problem:
            raise SerializationError(
                f"{task.describe()}: its metadata cannot be sent to a worker process "
                f"({type(problem).__name__}: {problem}); use plain data in metadata",
                **task.context(),
            ) from problem

    def _function_bytes(self, task: Task) -> bytes:
        """The pickled function; kept per function when it travels by reference."""
        key = id(task.fn)
        known = self._functions.get(key)
        if known is not None and known[0] is task.fn:
            return known[1]
        try:
            data, by_reference = _serialize.dumps_function(task.fn)
        except Exception as problem:
            raise unpicklable_function(task, problem) from problem
        if by_reference:  # by value (closures, __main__) it must be pickled afresh each time
            if len(self._functions) >= _CACHE_SIZE:
                self._functions.clear()
            self._functions[key] = (task.fn, data)  # holding fn keeps its id unique
        return data

    def poke(self) -> None:
        if not self._idle and threading.get_ident() != self._io_ident:
            # Every worker is busy: the I/O thread hands this task out when one answers
            # (it makes a worker idle before it looks at the queue, so nothing is missed).
            self._fork_the_others()
            if self._min != self._max:
                with self._lock:
                    self._grow_if_needed()
            return
        while self._backlog or self._sink.has_pending():
            with self._lock:
                worker = self._worker_with_room()
                if worker is None:
                    self._grow_if_needed()
                idle = worker is not None and not worker.inflight
            if worker is None:
                self._fork_the_others()
                return
            tasks = self._take_for(worker, idle)
            if tasks:
                self._send_tasks(worker, tasks)
                continue
            if idle:
                with self._lock:
                    if not worker.dead:
                        self._idle.append(worker)
            # Nothing left, or the next task must wait for an idle worker (it has a timeout).
            if not idle or not self._sink.has_pending():
                return

    def _fork_the_others(self) -> None:
        """Work waits for a worker: the fork server forks the pool's other first workers now."""
        server = self._fork_server  # the I/O thread drops it if it dies
        if self._forking and server is not None:
            server.go()

    def _worker_with_room(self) -> _Worker | None:
        """Called with the lock held: an idle worker, else the least busy one with room."""
        if self._idle:
            return self._idle.pop()
        if self._ahead <= 1 or self.setup.memory_limit is not None:
            return None  # tasks are long (or not yet measured), or memory is checked per task
        if threading.get_ident() != self._io_ident:
            # A submitting thread only wakes idle workers; busy ones get their queues
            # topped up by the I/O thread as their answers come in, many tasks per write.
            return None
        best: _Worker | None = None
        for worker in self._workers:
            if (
                worker.inflight
                and len(worker.inflight) < self._ahead
                and not (worker.dead or worker.retiring or worker.claimed)
                and self._may_send(worker)
                and (best is None or len(worker.inflight) < len(best.inflight))
            ):
                best = worker
        return best

    def _take_for(self, worker: _Worker, idle: bool) -> list[Task]:
        """Tasks for one write to ``worker``: its share of the queue, as far as it has room.

        Tasks handed back by a dead worker go first, then the pool's queue. A
        busy worker only gets tasks without a timeout (``ahead``).
        """
        with self._lock:
            room = min(self._ahead - len(worker.inflight), self._allowance(worker))
            if self.setup.memory_limit is not None:
                room = 1  # memory is checked between one task and the next
            elif room > 1:
                # leave the other workers their part of what waits
                waiting = self._sink.pending_count() + len(self._backlog)
                if waiting > 1:
                    ready = sum(1 for w in self._workers if w.ready and not w.dead) or 1
                    room = min(room, 1 + -(-(waiting - 1) // ready))
                else:
                    room = 1
            room = max(room, 1)
            tasks: list[Task] = []
            backlog = self._backlog
            while backlog and len(tasks) < room:
                if (tasks or not idle) and backlog[0].timeout is not None:
                    return tasks
                tasks.append(backlog.popleft())
        if len(tasks) < room:
            tasks += self._sink.take_some(room - len(tasks), ahead=bool(tasks) or not idle)
        return tasks

    def _may_send(self, worker: _Worker) -> bool:
        return self._allowance(worker) > 0

    def _allowance(self, worker: _Worker) -> int:
        """How many more tasks ``worker`` may be sent before it is recycled (max_tasks)."""
        limit = self.setup.max_tasks
        return _MAX_AHEAD if limit is None else limit - worker.sent

    def stop_task(self, task: Task, error: BaseException) -> bool:
        with self._lock:
            if task in self._backlog:
                self._backlog.remove(task)
                worker = None
            else:
                worker = next((w for w in self._workers if task in w.inflight), None)
                if worker is None:
                    return False
                task.stop_error = error
                running = worker.inflight[0] is task
        if worker is None:
            self._sink.finished(task, False, error)
        elif running:
            _kill(worker)
        else:
            # It waits behind the running task: the worker skips it (and says so).
            self._send_frames(worker, [], _wire.frame(_wire.CANCEL, task.id, ()))
        return True

    def read_here(self, task: Task, deadline: float | None) -> None:
        """Wait for ``task`` by reading its worker's answer in this thread.

        This saves a round trip through the I/O thread: its wake-up, and the
        hand-over of the result to this thread. Only for a task that is all its
        worker has (nothing was sent behind it), when no other thread reads
        that worker; meanwhile the I/O thread leaves its socket alone and no
        work is sent ahead to it. Returns when the task has ended, at
        ``deadline``, or when the worker went away (the I/O thread then
        handles that as always); the caller waits as usual after that.
        """
        if threading.get_ident() == self._io_ident:
            return
        with self._lock:
            worker = next((w for w in self._workers if w.inflight and w.inflight[0] is task), None)
            if (
                worker is None
                or len(worker.inflight) != 1
                or worker.claimed
                or worker.io_reading
                or worker.outbox
                or worker.dead
                or self._closing
            ):
                return
            try:
                self._selector.unregister(worker.sock)
            except (KeyError, ValueError):
                return  # its socket is closed or being closed: wait as usual
            worker.claimed = True
        try:
            self._read_until_done(worker, task, deadline)
        finally:
            with self._lock:
                worker.claimed = False
                exited = worker.exit_pending or worker.dead
                if not exited:
                    events = selectors.EVENT_READ
                    if worker.outbox:
                        events |= selectors.EVENT_WRITE
                    try:
                        self._selector.register(worker.sock, events, ("sock", worker))
                    except (OSError, ValueError):
                        exited = True  # its socket was closed: the pool stopped its workers
            if exited:
                self._call(lambda: self._on_exit(worker))

    def _read_until_done(self, worker: _Worker, task: Task, deadline: float | None) -> None:
        poller = select.poll()
        poller.register(worker.sock.fileno(), select.POLLIN)
        handle = task.handle
        mean = self._mean_task
        if self._last_quick or (mean is not None and mean < _wire.SPIN_SECONDS):
            # Answers come that fast: poll a while before sleeping (see _wire.SPIN_SECONDS).
            # The latest answer counts too: the mean takes about 20 answers to come
            # down after one long task, and each of them would sleep.
            _wire.poll_briefly(poller, _wire.SPIN_SECONDS)
        while not handle.done():
            # In slices, to notice a pool that stopped its workers while this waits.
            wait = _READ_HERE_SLICE
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            if self._broken or worker.exit_pending:
                return
            if not poller.poll(wait * 1000):
                continue
            try:
                frames, ended = worker.reader.read(worker.sock)
                for kind, task_id, body in frames:
                    self._answer_here(worker, kind, task_id, body)
            except OSError:
                return  # its socket is gone: the worker is going or gone
            except BaseException:
                # Interrupted (Ctrl-C) or failed with an answer read but perhaps not
                # reported: the worker is replaced, and the I/O thread ends its task
                # as a crash, unless it was reported already (see _answer_here).
                _kill(worker)
                raise
            if ended:
                return

    def _answer_here(self, worker: _Worker, kind: int, task_id: int, body: bytearray) -> None:
        """read_here: act on one frame, in an order that an interruption cannot lose.

        The answer is reported while the task is still the worker's running one,
        and only then taken off the worker.
        """
        if kind in (_wire.PROGRESS, _wire.READY, _wire.BOOT_FAILED):
            self._on_frame(worker, kind, task_id, body)
            return
        task = worker.task
        if kind not in _ANSWERS or task is None or task.id != task_id:
            logger.error("worker %s sent an unexpected frame %r", worker.label, chr(kind))
            return
        self._sink.finished(task, *self._outcome(task, worker, kind, body))
        self._take_answered(worker)
        self._worker_free(worker)

    def close(self, deadline: float | None, wait: bool = True) -> None:
        if not self._thread.is_alive():
            return  # already closed: its wake-up pipe is gone
        with self._lock:
            first = not self._closing
            self._closing = True  # from now on no worker is replaced
            if deadline is not None and (self._deadline is None or deadline < self._deadline):
                self._deadline = deadline
        self._call(self._retire_idle if first else _nothing)
        if not wait or threading.get_ident() == self._io_ident:
            return
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic()) + 2.0
        self._thread.join(remaining)

    def delivers_here(self) -> bool:
        return threading.get_ident() == self._io_ident

    def abandon(self) -> None:
        self._abandoned = True  # no lock: a flag, and a byte to wake the I/O thread
        try:
            self._wake_io_thread()
        except OSError:
            pass  # the pipe was closed just now: the I/O thread has ended

    def _live(self) -> list[_Worker]:
        return [w for w in self._workers if not w.dead and not w.retiring]

    def _grow_if_needed(self) -> None:
        """Called with the lock held: start workers for tasks that wait, up to the maximum."""
        if self._closing or self._broken or self._min == self._max:
            return
        live = self._live()
        # workers on their way: started but not ready, or asked for and not yet started
        coming = sum(1 for w in live if not w.ready) + self._planned
        wanted = min(self._sink.pending_count() - coming, self._max - len(live) - self._planned)
        if wanted > 0:
            self._planned += wanted
            self._call_locked(lambda: self._spawn_planned(wanted))

    def _spawn_planned(self, count: int) -> None:
        for _ in range(count):
            with self._lock:
                self._planned -= 1
            if not self._closing:
                self._spawn(replacement=False)

    def resize(self, workers: int) -> None:
        with self._lock:
            self._min = self._max = workers
            self.workers = workers
        self._call(self._apply_size)

    def _apply_size(self) -> None:
        """I/O thread: start or retire workers until there are as many as wanted."""
        if self._closing:
            return
        with self._lock:
            live = self._live()
            missing = self._min - len(live) - self._planned
            surplus = [w for w in self._idle if w in live][: max(0, len(live) - self._max)]
            for worker in surplus:
                self._idle.remove(worker)
                worker.retiring = True
        for worker in surplus:
            self._retire(worker)
        for _ in range(max(0, missing)):
            self._spawn(replacement=False)

    def stats(self) -> EngineStats:
        horizon = time.monotonic() - 60
        with self._lock:
            for events in (self._crashes, self._restarts):
                while events and events[0] < horizon:
                    events.popleft()
            alive = sum(1 for w in self._workers if w.ready and not w.dead and not w.retiring)
            starting = sum(1 for w in self._workers if not w.ready and not w.dead)
            return EngineStats(alive, starting, len(self._restarts), len(self._crashes))

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._workers if not w.dead]

    # -- sending ------------------------------------------------------------

    def _send_tasks(self, worker: _Worker, tasks: list[Task]) -> None:
        buffers: list[_wire.Buffer] = []
        for task in tasks:
            assert task.fn_data is not None
            assert task.args_data is not None
            assert task.ctx_data is not None
            kind = _wire.TASK if task.items is None else _wire.CHUNK
            buffers += _wire.task_frame(
                kind, task.id, task.attempt, task.fn_data, task.ctx_data, task.args_data
            )
        self._send_frames(worker, tasks, buffers)

    def _send_frames(self, worker: _Worker, tasks: list[Task], buffers: list[_wire.Buffer]) -> None:
        """Write ``buffers`` to ``worker``, which from now on owes an answer for ``tasks``."""
        with self._lock:
            if worker.dead:
                self._backlog.extend(tasks)
                return
            if not worker.inflight:
                worker.head_since = time.monotonic()
            worker.inflight.extend(tasks)
            worker.sent += len(tasks)
            for task in tasks:
                task.assign(worker.label)
            if worker.outbox:  # an earlier write is unfinished: queue behind it
                worker.outbox += buffers
                return
            try:
                rest = _wire.send_some(worker.sock, buffers)
            except OSError:
                # The worker is going away; the I/O thread will see it die.
                for task in tasks:
                    worker.inflight.remove(task)
                self._backlog.extend(tasks)
                return
            if rest:
                worker.outbox = rest
        if rest:
            self._watch_writes(worker)  # outside the lock: it may queue an I/O-thread command
        elif self.setup.memory_kill and threading.get_ident() != self._io_ident:
            self._call(_nothing)  # its select may wait without a timeout: memory is checked there

    def _watch_writes(self, worker: _Worker) -> None:
        def register() -> None:
            with self._lock:  # a claimed socket is registered again, with this, when released
                if not (worker.dead or worker.claimed) and worker.outbox:
                    self._selector.modify(
                        worker.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, ("sock", worker)
                    )

        self._on_io_thread(register)

    def _on_io_thread(self, command: Callable[[], None]) -> None:
        """Run ``command`` now if this is the I/O thread, else have the I/O thread run it."""
        if threading.get_ident() == self._io_ident:
            command()
        else:
            self._call(command)

    def _call(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the I/O thread."""
        with self._lock:
            self._call_locked(command)

    def _call_locked(self, command: Callable[[], None]) -> None:
        if self._wake_closed:
            return  # the I/O thread has ended; there is nothing left to do
        self._commands.append(command)
        self._wake_io_thread()

    def _wake_io_thread(self) -> None:
        """One byte down the I/O thread's wake-up pipe; takes no lock."""
        if self._wake_closed:
            return  # the I/O thread has ended
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway

    # -- the I/O thread ------------------------------------------------------

    def _loop(self) -> None:
        self._io_ident = threading.get_ident()
        try:
            while not (self._closing and not self._workers):
                self._report_answers()
                for key, mask in self._selector.select(self._select_timeout()):
                    what, worker = key.data
                    if what == "wake":
                        self._drain_wake()
                    elif what == "forked":
                        self._take_forked(wait=False)
                    elif what == "pidfd":
                        self._on_exit(worker)
                    else:
                        if mask & selectors.EVENT_WRITE:
                            self._flush(worker)
                        if mask & selectors.EVENT_READ:
                            self._read(worker)
                self._enforce_deadline()
                self._retire_idle_expired()
                self._kill_over_memory()
                if self._abandoned and not self._closing:
                    self.close(None, wait=False)
        except BaseException as exc:  # a bug here must not leave handles waiting forever
            logger.critical("makeparallel I/O thread failed", exc_info=True)
            self._give_up(TaskError(f"the pool's I/O thread failed: {exc!r}"))
        finally:
            self._teardown()

    def _over_memory(self, worker: _Worker) -> bool:
        limit = self.setup.memory_limit
        if limit is None:
            return False
        used = self._memory_of(worker.proc.pid)
        if used is None or used <= limit:
            return False
        logger.info(
            "recycling worker %s: it uses %s, over the pool's memory limit of %s",
            worker.label,
            describe_size(used),
            describe_size(limit),
        )
        return True

    def _kill_over_memory(self) -> None:
        """memory_limit_action="kill": stop a running task whose worker is over the limit."""
        limit = self.setup.memory_limit
        if limit is None or not self.setup.memory_kill:
            return
        now = time.monotonic()
        if now < self._next_memory_check:
            return
        self._next_memory_check = now + _MEMORY_CHECK_INTERVAL
        with self._lock:
            busy = [(w, w.task) for w in self._workers if w.task is not None and not w.dead]
        for worker, task in busy:
            used = self._memory_of(worker.proc.pid)
            if task is None or used is None or used <= limit:
                continue
            task.stop_error = MemoryLimitError(
                f"{task.describe()} was stopped: its worker {worker.label} used "
                f"{describe_size(used)}, over the pool's memory limit of {describe_size(limit)}",
                **task.context(worker.label),
            )
            _kill(worker)

    def _select_timeout(self) -> float | None:
        if self._closing and self._deadline is not None and not self._killed_all:
            return max(0.0, self._deadline - time.monotonic())
        if self._closing and self._killed_all:
            return 0.1
        waits = []
        expiry = self._next_idle_expiry()
        if expiry is not None:
            waits.append(max(0.0, expiry - time.monotonic()))
        if self.setup.memory_kill and any(w.task is not None for w in self._workers):
            waits.append(_MEMORY_CHECK_INTERVAL)
        return min(waits) if waits else None

    def _next_idle_expiry(self) -> float | None:
        timeout = self.setup.idle_timeout
        if timeout is None or self._closing:
            return None
        with self._lock:
            if not self._idle or len(self._live()) <= self._min:
                return None
            return min(w.idle_since for w in self._idle) + timeout

    def _retire_idle_expired(self) -> None:
        """Retire workers idle longer than idle_timeout, never going below the minimum."""
        expiry = self._next_idle_expiry()
        if expiry is None or expiry > time.monotonic():
            return
        assert self.setup.idle_timeout is not None
        cutoff = time.monotonic() - self.setup.idle_timeout
        with self._lock:
            spare = len(self._live()) - self._min
            leaving = sorted(
                (w for w in self._idle if w.idle_since <= cutoff), key=lambda w: w.idle_since
            )[: max(0, spare)]
            for worker in leaving:
                self._idle.remove(worker)
                worker.retiring = True
        for worker in leaving:
            self._retire(worker)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self._commands:
            self._commands.popleft()()

    def _spawn_all(self) -> None:
        if self._fork_server is None:
            for _ in range(self._min):
                self._spawn(replacement=False)
        elif self._forking:
            # Each first worker joins as soon as the fork server says it exists.
            server = self._fork_server.fileno()
            self._selector.register(server, selectors.EVENT_READ, ("forked", None))

    def _take_forked(self, wait: bool) -> None:
        """I/O thread: add the first workers the fork server has forked by now (or all)."""
        assert self._fork_server is not None
        gone = False
        while self._forking:
            try:
                forked = self._fork_server.started(wait)
            except ForkServerGone:
                gone = True
                break
            except OSError as exc:
                for _, sock in self._forking:
                    sock.close()
                self._forking = []
                self._give_up(TaskError(f"cannot start a worker process: {exc}"))
                break
            if forked is None:
                return
            index, sock = self._forking.pop(0)
            with self._lock:
                self._planned -= 1
            self._spawn(replacement=False, started=(index, forked, sock))
        try:
            self._selector.unregister(self._fork_server.fileno())
        except (KeyError, ValueError):
            pass  # taken before the I/O thread had started to listen
        if gone:
            self._without_fork_server()

    def _without_fork_server(self) -> None:
        """I/O thread: the fork server has exited; new workers start as fresh interpreters.

        Forking another one now would fork this process and its threads. The
        workers the fork server forked run on; so does the pool.
        """
        server, self._fork_server = self._fork_server, None
        assert server is not None
        logger.warning(
            "pool %r: its fork server (pid %d) has exited; new workers start as fresh "
            "interpreters, which do not share this process's state",
            self.pool_name,
            server.pid,
        )
        server.close()  # no longer watched: _take_forked stopped that
        forking, self._forking = self._forking, []
        for _, sock in forking:
            sock.close()
        with self._lock:
            self._planned -= len(forking)
        for _ in forking:
            self._spawn(replacement=False)

    def _spawn(self, replacement: bool = True, started: _Started | None = None) -> None:
        if replacement:
            with self._lock:
                self._restarts.append(time.monotonic())
        if started is None:
            try:
                started = self._start_worker_process()
            except OSError as exc:
                self._give_up(TaskError(f"cannot start a worker process: {exc}"))
                return
        self._add_worker(started)

    def _add_worker(self, started: _Started) -> _Worker:
        """Watch a started worker process: its socket, and its pidfd where there is one."""
        index, proc, parent_sock = started
        worker = _Worker(index, proc, parent_sock)
        parent_sock.setblocking(False)
        self._selector.register(parent_sock, selectors.EVENT_READ, ("sock", worker))
        try:
            worker.pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            worker.pidfd = None  # no pidfd here: the socket's EOF tells us instead
        else:
            self._selector.register(worker.pidfd, selectors.EVENT_READ, ("pidfd", worker))
        with self._lock:
            self._workers.append(worker)
        return worker

    def _new_channel(self) -> tuple[int, socket.socket, socket.socket]:
        """A new worker's index and socket pair, its settings already waiting in it."""
        index = self._next_index
        self._next_index += 1
        parent_sock, child_sock = socket.socketpair()
        config = {
            "sys_path": [p or os.getcwd() for p in sys.path],
            "pool": self.pool_name,
            "index": index,
            "initializer": self._initializer,
            "ignore_sigterm": _pool_settings.workers_ignore_sigterm,
        }
        _wire.send_all(parent_sock, _wire.frame(_wire.CONFIG, 0, (_serialize.dumps(config),)))
        return index, parent_sock, child_sock

    def _start_worker_process(self) -> _Started:
        """A new worker process, its settings already waiting in its socket."""
        index, parent_sock, child_sock = self._new_channel()
        try:
            proc = self._start_process(child_sock.fileno(), _lifeline_read_end())
        except OSError:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        return index, proc, parent_sock

    def _start_process(self, sock_fd: int, lifeline: int) -> _Process:
        """A new worker process holding these two descriptors, running ``_worker.main``."""
        if self._fork_server is not None and self._forking:
            self._take_forked(wait=True)  # the fork server answers in order
        if self._fork_server is not None:
            try:
                return self._fork_server.start_worker(sock_fd, lifeline)
            except ForkServerGone:
                self._without_fork_server()
        args = [
            sys.executable,
            *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
            "-c",
            _BOOT,
            str(sock_fd),
            str(lifeline),
            _PACKAGE_ROOT,
        ]
        return subprocess.Popen(args, pass_fds=(sock_fd, lifeline), stdin=subprocess.DEVNULL)

    def _flush(self, worker: _Worker) -> None:
        with self._lock:
            try:
                worker.outbox = _wire.send_some(worker.sock, worker.outbox)
            except OSError:
                worker.outbox = []
            if not (worker.outbox or worker.dead or worker.claimed):
                self._selector.modify(worker.sock, selectors.EVENT_READ, ("sock", worker))

    def _read(self, worker: _Worker) -> None:
        with self._lock:
            if worker.claimed:
                return  # readable before a caller took the socket over: the caller reads
            worker.io_reading = True
        try:
            try:
                frames, ended = worker.reader.read(worker.sock)
            except OSError:
                frames, ended = [], True
            last = len(frames) - 1
            for index, (kind, task_id, body) in enumerate(frames):
                # One hand-out of new work after the whole batch, not one per answer.
                self._on_frame(worker, kind, task_id, body, hand_out=index == last)
        finally:
            worker.io_reading = False
        if self._hand_out_later:  # the batch ended with a frame that hands out nothing
            self._hand_out_later = False
            self.poke()
        if ended:
            self._on_exit(worker)

    def _on_frame(
        self, worker: _Worker, kind: int, task_id: int, body: bytearray, hand_out: bool = True
    ) -> None:
        """Act on one frame from ``worker``; an answer is queued for ``_report_answers``."""
        if kind == _wire.READY:
            worker.ready = True
            self._boot_failures = 0
            with self._lock:
                at_work = bool(worker.inflight) or worker in self._idle  # since it was forked
            if not at_work:
                self._worker_free(worker, hand_out)
            return
        if kind == _wire.BOOT_FAILED:
            worker.boot_error = body.decode(errors="replace")
            return
        if kind == _wire.PROGRESS:
            running = worker.task
            if running is not None and running.id == task_id:
                value, message = _serialize.loads(body)
                running.handle._set_progress(value, message)
            return
        if kind == _wire.SKIPPED:
            # A task cancelled while it waited in the worker; the pool has ended it already.
            with self._lock:
                for waiting in worker.inflight:
                    if waiting.id == task_id:
                        worker.inflight.remove(waiting)
                        break
            self._worker_free(worker, hand_out)
            return
        task = self._take_answered(worker)
        if task is None or task.id != task_id:
            logger.error("worker %s answered for unknown task %s", worker.label, task_id)
            return
        ok, value = self._outcome(task, worker, kind, body)
        self._worker_free(worker, hand_out)  # hand out the next task before running callbacks
        self._answered.append((task, ok, value))

    def _take_answered(self, worker: _Worker) -> Task | None:
        """Take the task ``worker`` just answered off it, and note how long it took."""
        with self._lock:
            task = worker.inflight.popleft() if worker.inflight else None
            worker.tasks_done += 1
            now = time.monotonic()
            self._note_task_time(now - worker.head_since)
            worker.head_since = now  # the next task in its queue starts now
        if self._forking:
            assert self._fork_server is not None
            self._fork_server.go()  # the first worker has answered: fork the others
        return task

    def _report_answers(self) -> None:
        """Settle the tasks answered since the last call, in the order they were answered.

        The I/O thread does this last before it waits again: a caller woken by
        its result then finds the GIL free instead of waiting for this thread.
        """
        answered = self._answered
        while answered:
            self._sink.finished(*answered.popleft())

    def _outcome(self, task: Task, worker: _Worker, kind: int, body: bytearray) -> tuple[bool, Any]:
        """How ``task`` ended, from its answer: ``(True, value)`` or ``(False, exception)``."""
        if task.stop_error is not None:
            return False, task.stop_error  # asked to stop, but it finished first: as asked
        if kind == _wire.ERROR:
            return False, from_remote(task, bytes(body), worker.label)
        try:
            if kind == _wire.RESULT:
                value = _serialize.loads(*_wire.unblob(memoryview(body)))
            else:
                value = _serialize.loads(body)
        except Exception as problem:
            return False, SerializationError(
                f"{task.describe()}: the result could not be unpickled in the parent "
                f"({type(problem).__name__}: {problem})",
                **task.context(worker.label),
            )
        if kind == _wire.CHUNK_RESULT:
            values, blobs, seconds = value
            base = task.first_index
            errors = {
                i: from_remote(task, blob, worker.label, base + i) for i, blob in blobs.items()
            }
            value = (values, errors, seconds)
        return True, value

    def _note_task_time(self, seconds: float) -> None:
        """Called with the lock held: update the mean time per task and how many go ahead."""
        mean = self._mean_task
        if mean is None:
            mean = seconds
        else:
            # One slow task triples the estimate at most; a run of them soon stops sending ahead.
            mean += _SMOOTHING * (min(seconds, _OUTLIER * mean) - mean)
        self._mean_task = mean
        self._last_quick = seconds < _wire.SPIN_SECONDS
        self._ahead = max(1, min(_MAX_AHEAD, int(_AHEAD_SECONDS / max(mean, 1e-6))))

    def _worker_free(self, worker: _Worker, hand_out: bool = True) -> None:
        """A worker answered (or became ready): give it more work, or let it rest or leave.

        ``hand_out``: also send waiting tasks to every worker with room (False while
        more answers of the same batch are still to be read).
        """
        if worker.dead:
            return
        if worker.inflight:
            if not (self._closing or worker.retiring):
                self._hand_out(hand_out)  # idle workers first, then the queues of busy ones
            return
        if self._closing:
            self._retire(worker)
            return
        limit = self.setup.max_tasks
        if (limit is not None and worker.tasks_done >= limit) or self._over_memory(worker):
            worker.retiring = True
            self._retire(worker)
            self._on_io_thread(self._spawn)  # the new worker takes its place once it is ready
            return
        with self._lock:
            # the pool was resized down (the first test is the cheap one)
            shrinking = len(self._workers) > self._max and len(self._live()) > self._max
            if shrinking:
                worker.retiring = True
        if shrinking:
            self._retire(worker)
            return
        with self._lock:
            worker.idle_since = time.monotonic()
            self._idle.append(worker)
        self._hand_out(hand_out)  # tasks handed back by a dead worker go out first

    def _hand_out(self, now: bool) -> None:
        """Send waiting work to workers with room, now or after the batch being read."""
        if now:
            self.poke()
        else:
            self._hand_out_later = True  # the I/O thread's _read pokes at the end of its batch

    def _on_exit(self, worker: _Worker) -> None:
        if worker.dead:
            return
        with self._lock:
            if worker.claimed:
                # A caller reads its socket: handled when that caller lets go (and the
                # pidfd, readable from now on, is not watched until then).
                if worker.pidfd is not None and not worker.exit_pending:
                    self._selector.unregister(worker.pidfd)
                worker.exit_pending = True
                return
            worker.dead = True  # from here on it gets no new task
        # Whatever the worker wrote before it died is still in the socket: read it first.
        self._read_remaining(worker)
        self._report_answers()
        with self._lock:
            sent = list(worker.inflight)
            task = sent[0] if sent else None
            if task is not None and not worker.ready and task.stop_error is None:
                task = None  # sent before the worker was ready: it never started
            # Tasks queued behind the one that ran never started: they go first in line.
            behind = [t for t in sent[1 if task else 0 :] if t.stop_error is None]
            worker.inflight.clear()
            self._backlog.extendleft(reversed(behind))
            if worker in self._idle:
                self._idle.remove(worker)
            self._workers.remove(worker)
        for fd in (worker.sock.fileno(), worker.pidfd):
            if fd is not None and fd >= 0:
                try:
                    self._selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
        worker.sock.close()
        if worker.pidfd is not None:
            os.close(worker.pidfd)
        returncode = _reap(worker.proc)
        if not self._closing:
            # First the replacement (it starts sooner), then the news for the task's caller.
            self._replace(worker, task, returncode)
        if task is not None:
            error = task.stop_error or worker_crashed(task, worker.label, returncode)
            self._sink.finished(task, False, error)
        if behind and not self._closing:
            self.poke()

    def _replace(self, worker: _Worker, task: Task | None, returncode: int | None) -> None:
        if not worker.retiring and (task is None or task.stop_error is None):
            with self._lock:
                self._crashes.append(time.monotonic())
        if not worker.ready:
            self._boot_failed(worker, returncode)
            return
        if worker.retiring and task is None:
            logger.debug("worker %s left after %d tasks", worker.label, worker.tasks_done)
            return  # recycled (its replacement already started), idle, or the pool shrank
        if task is not None and task.stop_error is not None:
            logger.debug("stopped worker %s: %s", worker.label, task.stop_error)
        else:
            how = describe_exit(returncode)[0]
            logger.warning("worker %s %s; starting a new one", worker.label, how)
        self._spawn()

    def _read_remaining(self, worker: _Worker) -> None:
        while True:
            try:
                frames, ended = worker.reader.read(worker.sock, drain=True)
            except OSError:
                return
            for kind, task_id, body in frames:
                self._on_frame(worker, kind, task_id, body)
            if ended or not frames:
                return

    def _boot_failed(self, worker: _Worker, returncode: int | None) -> None:
        if returncode in _KILLED_FROM_OUTSIDE and not worker.boot_error:
            # Killed while starting (by an operator or the OOM killer): not a start-up bug.
            self._spawn()
            return
        self._boot_failures += 1
        reason = worker.boot_error.strip() or f"it {describe_exit(returncode)[0]}"
        logger.error("worker %s failed to start: %s", worker.label, reason)
        if self._boot_failures < _MAX_BOOT_FAILURES:
            self._spawn()
            return
        if not any(w.ready for w in self._workers):
            self._give_up(
                TaskError(
                    f"pool {self.pool_name!r}: worker processes fail to start "
                    f"({self._boot_failures} in a row); the last one said:\n{reason}"
                )
            )

    def _give_up(self, error: BaseException) -> None:
        if self._broken:
            return
        self._broken = True
        with self._lock:
            backlog = list(self._backlog)
            self._backlog.clear()
        for task in backlog:
            self._sink.finished(task, False, error)
        self._sink.broken(error)

    # -- closing -------------------------------------------------------------

    def _retire_idle(self) -> None:
        with self._lock:
            idle = list(self._idle)
            self._idle.clear()
            starting = [w for w in self._workers if not w.ready]
        for worker in idle + starting:
            self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        """Ask a worker with no task to exit: it reads EOF and leaves."""
        try:
            worker.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _enforce_deadline(self) -> None:
        if (
            self._closing
            and not self._killed_all
            and self._deadline is not None
            and time.monotonic() >= self._deadline
        ):
            self._killed_all = True
            with self._lock:
                workers = list(self._workers)
            for worker in workers:
                _kill(worker)

    def _teardown(self) -> None:
        # After a normal close no worker is left; after a failure of this thread,
        # the tasks still on workers must end too, or their callers would wait forever.
        self._report_answers()
        with self._lock:
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
            backlog = list(self._backlog)
            self._backlog.clear()
        orphaned = [t for w in workers for t in w.inflight] + backlog
        for worker in workers:
            _kill(worker)
            _reap(worker.proc)
            worker.sock.close()
            if worker.pidfd is not None:
                os.close(worker.pidfd)
        self._selector.close()
        for _, sock in self._forking:
            sock.close()
        if self._fork_server is not None:
            self._fork_server.close()
        for task in orphaned:
            self._sink.finished(
                task,
                False,
                TaskError(
                    f"{task.describe()} was lost: pool {self.pool_name!r} stopped its workers",
                    **task.context(),
                ),
            )
        with self._lock:
            self._wake_closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _plain_context(name: str) -> bytes:
    """The pickled task context for a name and no metadata, the common case."""
    return _serialize.dumps((name, {}))


def _nothing() -> None:
    pass


def _kill(worker: _Worker) -> None:
    """Kill the worker, and every process its task started (``_process_tree``)."""
    started: list[int] = []
    if can_list_children():
        try:
            worker.proc.send_signal(signal.SIGSTOP)  # it starts no process while they are found
            started = stop_descendants(worker.proc.pid)
        except OSError:
            pass  # it has ended: what it started is out of reach (or ended with it)
    try:
        worker.proc.kill()
    except OSError:
        pass
    kill_all(started)


def _reap(proc: _Process) -> int | None:
    """Wait for a worker process to end: its returncode, None if that is lost."""
    try:
        return _wait(proc, _REAP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        return _wait(proc, None)


def _wait(proc: _Process, timeout: float | None) -> int | None:
    """``proc.wait``, but None where the worker was reaped by someone else.

    ``Popen.wait`` says 0 then, as if the worker had exited normally: in a
    program that ignores SIGCHLD the system reaps every child as it ends.
    """
    if isinstance(proc, ForkedProcess):
        return proc.wait(timeout)
    returncode = wait_for_child(proc.pid, timeout)
    if returncode is not None:
        proc.returncode = returncode
    elif proc.returncode is not None:
        return proc.returncode  # Popen reaped it itself: its poll() in send_signal()
    else:
        proc.returncode = 0  # so Popen, too, knows it has ended
    return returncode
