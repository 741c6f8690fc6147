"""Pool: the queue, the task states and the life of one set of workers.

    submit(fn, *args) --> Task + Handle --> engine.prepare (pickling, in the caller's thread)
                                                  |
                                                  v
                                  _pending (FIFO) --poke--> engine pulls with take()
                                                                 |   marks the handle RUNNING
                                                                 v
          Handle <-- finished(task, ok, value) <-- engine thread (I/O, worker thread or inline)

The pool owns every task's state; engines only move tasks and report how
each ended. Every submitted task ends in exactly one terminal state, also
when the pool shuts down (pending tasks run, or are cancelled; stragglers
past a shutdown deadline are stopped and fail with a clear error).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import functools
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from . import _mapping
from ._memory import parse_size
from ._sizing import usable_cpus
from ._task import ChunkValue, Task, next_task_id, qualified_name
from ._timer import Timer
from .backends import create_backend, resolve_kind
from .backends.base import Backend, WorkerSetup
from .errors import (
    CircuitOpenError,
    PoolFullError,
    SerializationError,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
)
from .handle import Handle, TaskState
from .health import HealthReport, RunningTask, judge
from .policies import CircuitBreaker, Retry, check_seconds, check_timeout

__all__ = ["Pool", "ShutdownSummary"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

logger = logging.getLogger("makeparallel")

_RUNNING, _CLOSING, _CLOSED = "running", "closing", "closed"
_pool_numbers = itertools.count(1)
_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()
# Pools with work queued, running or waiting to retry: a pool its program no longer
# holds finishes that work before it is collected (and its workers let go).
_busy_pools: set[Pool] = set()
_fork_generation = 0  # how many forks this process is from the one that started the program


def check_workers(value: object, parameter: str = "workers") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{parameter} must be a whole number >= 1 or None, got {value!r}")
    if value < 1:
        hint = (
            "leave it as None to use every usable CPU"
            if parameter == "workers"
            else ("use None for no limit")
        )
        raise ValueError(f"{parameter} must be >= 1, got {value}; {hint}")
    return value


class Pool(concurrent.futures.Executor):
    """A set of workers that run submitted calls in parallel.

    ``backend`` is ``"auto"`` (processes on a GIL build of CPython, threads
    on a free-threaded one), ``"process"``, ``"thread"``, ``"serial"``,
    ``"interpreter"`` (Python 3.14+), or any ``concurrent.futures.Executor``
    to hand the work to. ``workers`` defaults to the CPUs this process may
    use (CPU affinity and cgroup quota). Worker processes start when the pool
    is created.

    ``initializer(*initargs)`` runs once in every worker before its first
    task; if it fails, workers are not restarted forever: after three failed
    starts in a row the queued tasks fail with a ``TaskError`` quoting the
    error. ``max_tasks_per_worker`` replaces a worker after that many tasks
    (against slow leaks in the code it runs).

    ``memory_limit`` (bytes, or a size like ``"2GiB"``) caps each worker
    process's resident memory: a worker over it is replaced after its task,
    or with ``memory_limit_action="kill"`` its task fails at once with
    ``MemoryLimitError`` and the worker is replaced.

    ``max_pending`` bounds the tasks waiting for a worker: a ``submit`` that
    finds the queue full waits for room, at most ``pending_timeout`` seconds
    (None: as long as it takes, 0: not at all), then raises ``PoolFullError``.

    ``start`` is how worker processes begin: ``"spawn"`` (the default) starts
    each as a fresh interpreter; ``"fork"`` forks them, faster, from a copy of
    this process taken when the pool is created, so they see its modules and
    globals as they were then (POSIX only; docs/guide.md says when to choose it).
    """

    def __init__(
        self,
        workers: int | None = None,
        backend: str | concurrent.futures.Executor = "auto",
        name: str | None = None,
        *,
        min_workers: int | None = None,
        max_workers: int | None = None,
        idle_timeout: float | None = None,
        max_pending: int | None = None,
        pending_timeout: float | None = None,
        max_tasks_per_worker: int | None = None,
        memory_limit: int | str | None = None,
        memory_limit_action: str = "recycle",
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        start: str = "spawn",
    ) -> None:
        count, least = _sizes(workers, min_workers, max_workers)
        idle_timeout = check_timeout(idle_timeout, "idle_timeout")
        if idle_timeout is not None and least == count:
            raise ValueError(
                "idle_timeout retires idle workers down to min_workers: give min_workers "
                "and max_workers too (e.g. Pool(min_workers=1, max_workers=8, idle_timeout=60))"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {initializer!r}")
        if isinstance(initargs, str | bytes) or not isinstance(initargs, Iterable):
            raise TypeError(f"initargs must be a tuple of arguments, got {initargs!r}")
        self._max_pending = check_workers(max_pending, "max_pending")
        self._pending_timeout = (
            None if pending_timeout is None else check_seconds("pending_timeout", pending_timeout)
        )
        setup = WorkerSetup(
            initializer=initializer,
            initargs=tuple(initargs),
            max_tasks=check_workers(max_tasks_per_worker, "max_tasks_per_worker"),
            min_workers=least if least != count else None,
            idle_timeout=idle_timeout,
            memory_limit=None if memory_limit is None else parse_size(memory_limit),
            memory_kill=_memory_action(memory_limit_action) == "kill",
            start=check_start(start),
        )
        self.name = name or f"makeparallel-{next(_pool_numbers)}"
        self._pid = os.getpid()  # a process forked from this one has a copy, and no workers
        self._generation = _fork_generation
        self.workers = count  # the most workers this pool runs at once
        self._min_workers = least  # the fewest it keeps
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._canceller = self._cancel_running  # one bound method for every handle
        self._room = threading.Condition(self._lock)  # max_pending: a queued task left
        self._pending: deque[Task] = deque()
        self._running: dict[int, Task] = {}
        self._retrying: dict[int, Task] = {}  # failed attempts waiting for their back-off
        self._timer = Timer(f"{self.name}-timer")
        self._state = _RUNNING
        self._broken: BaseException | None = None
        self._engine_closed = False
        self._backend: Backend = create_backend(backend, count, self.name, setup)
        # Handles ask the engine to wait for them only if it can (the process engine).
        reads_here = type(self._backend).read_here is not Backend.read_here
        self._reader = self._read_here if reads_here else None
        self.backend = self._backend.kind if not isinstance(backend, str) else resolve_kind(backend)
        # The engine's threads see the pool through a weak reference, so a pool that
        # nobody holds any more (no handle of an unfinished task either) is collected,
        # and its workers and threads go with it, as a ProcessPoolExecutor's do.
        self._backend.start(_WeakSink(self))
        self._abandon = weakref.finalize(self, self._backend.abandon)
        self._abandon.atexit = False  # at exit, _shutdown_at_exit finishes the submitted work
        _track(self)

    # -- submitting --------------------------------------------------------

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        """Run ``fn(*args, **kwargs)`` on a worker; returns its Handle at once."""
        return self._submit_call(fn, args, kwargs)

    def _submit_call(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        fn_data: bytes | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        circuit_breaker: CircuitBreaker | None = None,
    ) -> Handle[R]:
        if not callable(fn):
            raise TypeError(f"submit needs a callable, got {type(fn).__name__}: {fn!r}")
        self._check_open()
        fn, reference = unwrap_parallel(fn)
        fn_data = fn_data or reference
        handle: Handle[R] = Handle(
            next_task_id(), name or _short_name(fn), metadata, self._canceller, self._reader
        )
        task = Task(
            fn,
            args,
            kwargs,
            handle,
            fn_data=fn_data,
            timeout=timeout,
            retry=retry,
            breaker=circuit_breaker,
        )
        if circuit_breaker is not None and not circuit_breaker.allow():
            handle._fail(
                CircuitOpenError(
                    f"{task.describe()} did not run: circuit breaker {circuit_breaker.name!r} "
                    f"is open after {circuit_breaker.failures} failures in a row; it lets a "
                    f"trial call through in {circuit_breaker.retry_after():.1f} s",
                    **task.context(),
                )
            )
            return handle
        self._enqueue(task)
        return handle

    def _submit_chunk(
        self,
        fn: Callable[..., Any],
        items: list[Any],
        first_index: int,
        fn_data: bytes | None,
        item_timeout: float | None = None,
        star: bool = False,
    ) -> Handle[ChunkValue]:
        """One task running ``fn`` on each item; its value is a ``ChunkValue``."""
        self._check_open()
        handle: Handle[ChunkValue] = Handle(next_task_id(), _short_name(fn), None, self._canceller)
        timeout = None if item_timeout is None else item_timeout * len(items)
        task = Task(
            fn,
            (),
            {},
            handle,
            items=items,
            star=star,
            first_index=first_index,
            fn_data=fn_data,
            timeout=timeout,
        )
        self._enqueue(task)
        return handle

    def _may_run_maps_inline(self) -> bool:
        """Whether a map whose items cost less than their trip may run them in the caller.

        Not when workers are set up for the function (an initializer, a memory
        limit) or the work is sent to an outside executor on purpose.
        """
        setup = self._backend.setup
        return (
            self._backend.kind in ("process", "thread")
            and setup.initializer is None
            and setup.memory_limit is None
        )

    def _run_chunk_here(
        self, fn: Callable[..., Any], items: list[Any], first_index: int, star: bool
    ) -> tuple[list[Any], dict[int, BaseException]]:
        """Run one map chunk in the calling thread: ``(values, {offset: error})``."""
        from .backends._inline import run_here

        handle: Handle[ChunkValue] = Handle(next_task_id(), _short_name(fn))
        task = Task(fn, (), {}, handle, items=items, star=star, first_index=first_index)
        _, (values, errors, _) = run_here(task, None)
        return values, errors

    def _prepare_function(self, fn: Callable[..., Any]) -> bytes | None:
        """Serialize ``fn`` once for many tasks (None when the engine does not need it)."""
        probe = Task(fn, (), {}, Handle(0, _short_name(fn)), items=[])
        self._backend.prepare(probe)
        return probe.fn_data

    def _enqueue(self, task: Task) -> None:
        try:
            self._backend.prepare(task)
        except SerializationError as error:
            task.handle._fail(error)
            return
        with self._lock:
            self._wait_for_room(task)
            if self._state != _RUNNING:
                raise RuntimeError(f"cannot schedule new tasks after pool {self.name!r} shut down")
            broken = self._broken
            if broken is None:
                self._pending.append(task)
                _busy_pools.add(self)  # kept until its work is done, even if dropped meanwhile
        if broken is not None:
            task.handle._fail(broken)
            return
        self._backend.poke()

    def _wait_for_room(self, task: Task) -> None:
        """With ``max_pending``: block (holding no lock while waiting) until the queue has room."""
        limit = self._max_pending
        if limit is None or len(self._pending) < limit:
            return
        deadline = (
            None if self._pending_timeout is None else time.monotonic() + self._pending_timeout
        )
        while len(self._pending) >= limit and self._state == _RUNNING and self._broken is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise PoolFullError(
                    f"pool {self.name!r} already has {limit} tasks waiting (max_pending); "
                    f"{task.describe()} was not queued. Wait for results before submitting "
                    "more, raise max_pending, or set pending_timeout to wait longer"
                )
            self._room.wait(remaining)

    def _check_open(self) -> None:
        if self._generation != _fork_generation:
            raise RuntimeError(
                f"pool {self.name!r} belongs to process {self._pid}; this process was forked "
                "from it and has none of its workers or threads: create a new pool here "
                "(the default pool of @parallel and parallel_map is new in every forked process)"
            )
        if self._state != _RUNNING:
            raise RuntimeError(f"cannot schedule new tasks after pool {self.name!r} shut down")

    # -- batches -----------------------------------------------------------

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[R]:
        """Like ``Executor.map``: results in order; input is read lazily, a bounded window ahead."""
        if not iterables:
            raise TypeError("map needs at least one iterable")
        try:
            length: int | None = min(len(it) for it in iterables)  # type: ignore[arg-type]
        except TypeError:
            length = None  # a generator among them: chunk sizes adapt as results come
        # One iterable goes as it is: a list is then sliced, not zipped item by item.
        single = len(iterables) == 1
        batches = _mapping.imap_batches(
            self,
            fn,
            iterables[0] if single else zip(*iterables, strict=False),
            chunksize=chunksize,
            ordered=True,
            star=not single,
            deadline=None if timeout is None else time.monotonic() + timeout,
            length=length,
        )
        return _mapping.flatten(batches)

    def imap(
        self,
        fn: Callable[[T], R],
        iterable: Iterable[T],
        *,
        chunksize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[R]:
        """Lazily apply ``fn`` to each item, pulling input only as workers free up."""
        return _mapping.flatten(
            _mapping.imap_batches(self, fn, iterable, chunksize=chunksize, ordered=ordered)
        )

    # -- what engines call (the Sink protocol) -----------------------------

    def take(self, ahead: bool = False) -> Task | None:
        with self._lock:
            return self._take_locked(ahead)

    def take_some(self, limit: int, ahead: bool = False) -> list[Task]:
        tasks: list[Task] = []
        with self._lock:
            while len(tasks) < limit:
                task = self._take_locked(ahead or bool(tasks))
                if task is None:
                    break
                tasks.append(task)
        return tasks

    def _take_locked(self, ahead: bool) -> Task | None:
        pending = self._pending
        while pending:
            if ahead and pending[0].timeout is not None:
                return None  # its clock starts now: it must go to an idle worker
            task = pending.popleft()
            if self._max_pending is not None:
                self._room.notify()
            if task.handle._start():
                self._running[task.id] = task
                if task.timeout is not None:
                    task.deadline_entry = self._timer.call_at(
                        time.monotonic() + task.timeout, functools.partial(self._expire, task)
                    )
                return task
            self._changed.notify_all()  # a cancelled task left the queue
        return None

    def has_pending(self) -> bool:
        return bool(self._pending)

    def pending_count(self) -> int:
        return len(self._pending)  # a read of one length: no lock needed

    def finished(self, task: Task, ok: bool, value: Any) -> None:
        if not self._release(task):
            return  # an attempt that was already stopped (timeout, cancel) reports late
        self._settle(task, ok, value)
        self._after_change()

    def broken(self, error: BaseException) -> None:
        with self._lock:
            self._broken = error
            self._room.notify_all()
            pending = list(self._pending) + list(self._retrying.values())
            self._pending.clear()
            self._retrying.clear()
        for task in pending:
            if task.handle.state is TaskState.PENDING:
                task.handle._fail(error)
        self._after_change()

    # -- how a task ends ---------------------------------------------------

    def _release(self, task: Task) -> bool:
        """Take ``task`` out of the running set; False if it is not the running attempt."""
        with self._lock:
            if self._running.get(task.id) is not task:
                return False
            del self._running[task.id]
        if task.deadline_entry is not None:
            self._timer.cancel(task.deadline_entry)
        return True

    def _settle(self, task: Task, ok: bool, value: Any, *, may_retry: bool = True) -> None:
        """Decide how a finished attempt ends its task: success, retry, or failure."""
        handle = task.handle
        breaker = task.breaker
        if ok:
            if breaker is not None:
                breaker.record_success()
            handle._succeed(value)
            return
        error: BaseException = value
        retry = task.retry
        if may_retry and retry is not None and retry.should_retry(error, task.attempt):
            delay = retry.delay(task.attempt)
            logger.warning(
                "%s failed on attempt %d of %d (%s: %s); retrying in %.2f s",
                task.describe(),
                task.attempt,
                retry.attempts,
                type(error).__name__,
                error,
                delay,
            )
            following = task.next_attempt()
            with self._lock:
                self._retrying[task.id] = following
            handle._retry()
            self._timer.call_at(
                time.monotonic() + delay, functools.partial(self._resubmit, following)
            )
            return
        if breaker is not None:
            if isinstance(error, TaskCancelledError):
                breaker.release_trial()
            else:
                breaker.record_failure()
        handle._fail(error, _terminal_state(error))

    def _resubmit(self, task: Task) -> None:
        with self._lock:
            self._retrying.pop(task.id, None)
            queued = task.handle.state is TaskState.PENDING and self._broken is None
            if queued:
                self._pending.append(task)
        if queued:
            self._backend.poke()
        self._after_change()

    def _expire(self, task: Task) -> None:
        if not self._release(task):
            return
        kind = self._backend.kind
        how = (
            "its worker process was stopped and replaced"
            if kind == "process"
            else "a thread cannot be killed: the task was asked to stop "
            "(current_task().cancelled() is now True) and its result will be dropped"
        )
        assert task.timeout is not None
        error = TaskTimeoutError(
            f"{task.describe()} timed out after {task.timeout:g} s on attempt {task.attempt}; "
            f"{how}",
            **task.context(),
        )
        self._backend.stop_task(task, error)
        self._settle(task, False, error)
        self._after_change()

    def _refuse_to_wait_here(self, what: object) -> None:
        """Raise if this thread delivers the pool's results (``what``: what would be waited for)."""
        if self._backend.delivers_here():
            raise RuntimeError(
                f"waiting for {what} in a callback on the I/O thread of pool {self.name!r} would "
                "wait for ever: that thread delivers the results. Chain the next step with "
                "on_complete or add_done_callback, or wait in a thread of your own"
            )

    def _read_here(self, handle: Handle[Any], timeout: float | None) -> float | None:
        """The handle's reader: let the engine wait for its running task in this thread.

        Returns what is left of ``timeout``. Refuses to wait in the thread that
        delivers this pool's results (a callback runs there): it would wait for ever.
        """
        self._refuse_to_wait_here(handle)
        task = self._running.get(handle.task_id)
        if task is None or self._generation != _fork_generation:
            return timeout  # (in a forked process the answer is the parent's to read)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._backend.read_here(task, deadline)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _cancel_running(self, handle: Handle[Any]) -> bool:
        """The handle's canceller: stop its running attempt, or forget its scheduled retry."""
        if self._generation != _fork_generation:
            return False  # a forked process's copy: the task is the parent's
        with self._lock:
            task = self._running.get(handle.task_id)
            if task is None:
                self._retrying.pop(handle.task_id, None)
        if task is None or not self._release(task):
            self._after_change()
            return handle.cancelled()
        error = TaskCancelledError(
            f"{task.describe()} was cancelled while running", **task.context()
        )
        self._backend.stop_task(task, error)
        self._settle(task, False, error)
        self._after_change()
        return True

    def _after_change(self) -> None:
        if self._pending or self._running or self._retrying:
            # Not idle. Read without the lock: whoever ends the last task checks
            # after its own removal, and so sees the pool idle.
            return
        with self._lock:
            idle = not self._pending and not self._running and not self._retrying
            if idle:
                self._changed.notify_all()
                _busy_pools.discard(self)
            close_now = idle and self._state == _CLOSING and not self._engine_closed
            if close_now:
                self._engine_closed = True
        if close_now:
            self._backend.close(None, wait=False)

    def resize(self, workers: int) -> None:
        """Run exactly ``workers`` workers from now on (autoscaling limits are replaced).

        New workers start at once; surplus ones leave as soon as they are idle.
        """
        count = check_workers(workers)
        if count is None:
            raise TypeError("resize needs a number of workers >= 1")
        self._check_open()
        self._backend.resize(count)
        self.workers = self._min_workers = count
        self._backend.poke()

    # -- health -------------------------------------------------------------

    def health(self) -> HealthReport:
        """A typed, JSON-ready report (``.to_dict()``): workers, queue, recent crashes,
        and ``healthy`` with the ``reasons`` when it is not. Cheap enough to poll."""
        engine = self._backend.stats()
        now = time.monotonic()
        with self._lock:
            state = {_RUNNING: "running", _CLOSING: "shutting_down", _CLOSED: "closed"}[self._state]
            running = list(self._running.values())
            queue_depth = len(self._pending)
            retrying = len(self._retrying)
            broken = self._broken
        started = [(t, t.handle._started_at) for t in running]
        longest = sorted(
            (
                RunningTask(t.id, t.handle.name, round(now - at, 3), t.worker)
                for t, at in started
                if at is not None
            ),
            key=lambda r: -r.seconds,
        )[:5]
        expected = self._min_workers if self.backend in ("process", "thread") else engine.alive
        busy = min(len(running), engine.alive)
        return HealthReport(
            pool=self.name,
            backend=self.backend,
            state=state,
            healthy=False,
            reasons=(),
            workers_expected=expected,
            workers_alive=engine.alive,
            workers_starting=engine.starting,
            workers_busy=busy,
            workers_idle=max(0, engine.alive - busy),
            queue_depth=queue_depth,
            tasks_running=len(running),
            tasks_waiting_to_retry=retrying,
            longest_running=tuple(longest),
            restarts_last_minute=engine.restarts_last_minute,
            crashes_last_minute=engine.crashes_last_minute,
        )._replace_verdict(
            judge(
                state, broken, expected, engine.alive, engine.starting, engine.crashes_last_minute
            )
        )

    # -- shutting down -----------------------------------------------------

    # Returns a summary where Executor.shutdown returns None: code written for
    # executors ignores the value, so the richer answer breaks nothing.
    def shutdown(  # type: ignore[override]
        self,
        wait: bool = True,
        *,
        cancel_pending: bool = False,
        timeout: float | None = None,
        cancel_futures: bool = False,
    ) -> ShutdownSummary:
        """Stop accepting work and release the workers.

        Pending tasks still run unless ``cancel_pending`` (alias
        ``cancel_futures``, the ``Executor`` name) cancels them. With
        ``wait``, block until the tasks end; with a ``timeout``, tasks still
        running after it are stopped and fail with ``TaskError``. Returns
        what happened to the tasks that had not ended when it was called.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout}")
        if self._generation != _fork_generation:
            return ShutdownSummary()  # a forked process's copy: the workers are the parent's
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._state == _CLOSED:
                return ShutdownSummary()  # shutting down twice is harmless (atexit does it)
            if self._state == _RUNNING:
                self._state = _CLOSING
            self._room.notify_all()  # blocked submitters learn that the pool is closing
            unfinished = (
                list(self._pending) + list(self._retrying.values()) + list(self._running.values())
            )
            cancelled: list[Task] = []
            if cancel_pending or cancel_futures:
                cancelled = list(self._pending) + list(self._retrying.values())
                self._pending.clear()
                self._retrying.clear()
        for task in cancelled:
            task.handle.cancel()
        if not wait:
            self._after_change()  # closes the engine now if nothing is left to run
            return ShutdownSummary.of(unfinished, stopped=())
        with self._lock:
            while self._pending or self._running or self._retrying:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._changed.wait(remaining)
            stragglers = (
                list(self._pending) + list(self._retrying.values()) + list(self._running.values())
            )
            self._pending.clear()
            self._retrying.clear()
            self._engine_closed = True
        if stragglers:
            self._backend.close(deadline, wait=False)  # no replacement workers from here on
            for task in stragglers:
                self._stop_straggler(task)
        self._backend.close(deadline)
        self._timer.close()
        self._abandon.detach()  # closed: nothing is left to let go of when it is collected
        _busy_pools.discard(self)
        self._state = _CLOSED
        return ShutdownSummary.of(unfinished, stopped=stragglers)

    def _stop_straggler(self, task: Task) -> None:
        error = TaskError(
            f"{task.describe()} was stopped: pool {self.name!r} shut down before it finished",
            **task.context(),
        )
        if task.handle.state is TaskState.PENDING:
            task.handle.cancel()
        elif self._release(task):
            self._backend.stop_task(task, error)
            self._settle(task, False, error, may_retry=False)

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # a with-block discards the summary
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.shutdown(wait=True, cancel_pending=True, timeout=0)
        else:
            self.shutdown(wait=True)

    def __repr__(self) -> str:
        return (
            f"<Pool name={self.name!r} backend={self.backend!r} workers={self.workers} "
            f"state={self._state}>"
        )


class _WeakSink:
    """A pool as its engine sees it, without keeping it alive; once it is gone,
    nothing waits and nothing is reported."""

    __slots__ = ("_pool",)

    def __init__(self, pool: Pool) -> None:
        self._pool = weakref.ref(pool)

    def take(self, ahead: bool = False) -> Task | None:
        pool = self._pool()
        return None if pool is None else pool.take(ahead)

    def take_some(self, limit: int, ahead: bool = False) -> list[Task]:
        pool = self._pool()
        return [] if pool is None else pool.take_some(limit, ahead)

    def has_pending(self) -> bool:
        pool = self._pool()
        return pool is not None and pool.has_pending()

    def pending_count(self) -> int:
        pool = self._pool()
        return 0 if pool is None else pool.pending_count()

    def finished(self, task: Task, ok: bool, value: Any) -> None:
        pool = self._pool()
        if pool is not None:
            pool.finished(task, ok, value)

    def broken(self, error: BaseException) -> None:
        pool = self._pool()
        if pool is not None:
            pool.broken(error)


def check_start(start: object) -> str:
    if start not in ("spawn", "fork"):
        raise ValueError(
            f"start must be 'spawn' (fresh interpreters) or 'fork' (copies of this process), "
            f"got {start!r}"
        )
    if start == "fork" and not hasattr(os, "fork"):
        raise ValueError(f"start='fork' needs os.fork, which {sys.platform} does not have")
    return str(start)


def _memory_action(action: object) -> str:
    if action not in ("recycle", "kill"):
        raise ValueError(
            f"memory_limit_action must be 'recycle' (replace the worker after its task) or "
            f"'kill' (stop the task at once with MemoryLimitError), got {action!r}"
        )
    return str(action)


def _sizes(
    workers: int | None, min_workers: int | None, max_workers: int | None
) -> tuple[int, int]:
    """(most, least) workers: fixed with ``workers``, a range with ``min/max_workers``."""
    check_workers(min_workers, "min_workers")
    check_workers(max_workers, "max_workers")
    fixed = check_workers(workers)
    if fixed is not None and (min_workers is not None or max_workers is not None):
        raise ValueError(
            "give either workers=N (a fixed size) or min_workers/max_workers (a range), not both"
        )
    if min_workers is None and max_workers is None:
        count = fixed or usable_cpus()
        return count, count
    most = max_workers if max_workers is not None else max(usable_cpus(), min_workers or 1)
    least = min_workers if min_workers is not None else 1
    if least > most:
        raise ValueError(
            f"min_workers ({least}) must not exceed max_workers ({most}): the pool scales "
            "between the two"
        )
    return most, least


def unwrap_parallel(fn: Callable[..., R]) -> tuple[Callable[..., R], bytes | None]:
    """The plain function behind a ``@parallel`` wrapper, and the wrapper pickled by reference."""
    if getattr(type(fn), "_makeparallel_wrapper", False):
        return fn.__wrapped__, fn._reference_bytes()  # type: ignore[attr-defined]
    return fn, None


@dataclass(frozen=True)
class ShutdownSummary:
    """What ``shutdown()`` did to the tasks that had not ended when it was called."""

    finished: int = 0  # ran to an end of their own (result, error or timeout)
    cancelled: int = 0  # never started, or were cancelled
    stopped: int = 0  # still running at the deadline, so stopped
    still_running: int = 0  # shutdown(wait=False): left to finish in the background

    @classmethod
    def of(cls, tasks: Iterable[Task], stopped: Iterable[Task]) -> ShutdownSummary:
        stopped_ids = {t.id for t in stopped}
        counts = {"finished": 0, "cancelled": 0, "stopped": 0, "still_running": 0}
        for handle in {t.id: t.handle for t in tasks}.values():
            if handle.task_id in stopped_ids and handle.state is not TaskState.CANCELLED:
                counts["stopped"] += 1
            elif handle.state is TaskState.CANCELLED:
                counts["cancelled"] += 1
            elif handle.done():
                counts["finished"] += 1
            else:
                counts["still_running"] += 1
        return cls(**counts)

    def __add__(self, other: ShutdownSummary) -> ShutdownSummary:
        return ShutdownSummary(
            self.finished + other.finished,
            self.cancelled + other.cancelled,
            self.stopped + other.stopped,
            self.still_running + other.still_running,
        )


def _terminal_state(error: BaseException) -> TaskState:
    if isinstance(error, TaskTimeoutError):
        return TaskState.TIMED_OUT
    if isinstance(error, TaskCancelledError):
        return TaskState.CANCELLED
    return TaskState.FAILED


def _short_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or qualified_name(fn)


# -- every live pool, for mp.shutdown() and interpreter exit ------------------

_exit_hook_installed = False
_exiting_on_error = False
#: set by install_signal_handlers(): exit gracefully, but no later than this
graceful_exit_deadline: float | None = None
#: set by install_signal_handlers(): new worker processes ignore SIGTERM
workers_ignore_sigterm = False
#: set by configure(): at a normal exit, how long submitted work may still run
exit_timeout: float | None = 60.0


def _track(pool: Pool) -> None:
    global _exit_hook_installed
    _live_pools.add(pool)
    if not _exit_hook_installed:
        _exit_hook_installed = True
        atexit.register(_shutdown_at_exit)
        previous = sys.excepthook

        def note_uncaught(
            kind: type[BaseException], value: BaseException, tb: TracebackType | None
        ) -> None:
            global _exiting_on_error
            _exiting_on_error = True
            previous(kind, value, tb)

        sys.excepthook = note_uncaught


def _forget_pools_in_child() -> None:
    # A forked process must not shut down, at its exit, the pools of its parent,
    # nor use them (each pool compares the generation it was made in: no getpid call).
    global _fork_generation
    _fork_generation += 1
    _live_pools.clear()
    _busy_pools.clear()


os.register_at_fork(after_in_child=_forget_pools_in_child)


def live_pools() -> list[Pool]:
    return list(_live_pools)


def _shutdown_at_exit() -> None:
    # After a normal end, submitted work finishes (as with concurrent.futures), but a
    # stuck task must not hold the interpreter forever: after exit_timeout it is stopped.
    # After a signal handled by install_signal_handlers(), running work gets until
    # that deadline. After Ctrl-C or an uncaught error, stop at once.
    normal_deadline = None if exit_timeout is None else time.monotonic() + exit_timeout
    for pool in live_pools():
        if graceful_exit_deadline is not None:
            remaining = max(0.0, graceful_exit_deadline - time.monotonic())
            pool.shutdown(wait=True, cancel_pending=True, timeout=remaining)
        elif _exiting_on_error:
            pool.shutdown(wait=True, cancel_pending=True, timeout=0)
        else:
            left = None if normal_deadline is None else max(0.0, normal_deadline - time.monotonic())
            summary = pool.shutdown(wait=True, timeout=left)
            if summary.stopped:
                logger.warning(
                    "pool %r: %d task(s) still running %s s after the program ended were "
                    "stopped; wait for your results before exiting, or raise "
                    "mp.configure(exit_timeout=...)",
                    pool.name,
                    summary.stopped,
                    exit_timeout,
                )
