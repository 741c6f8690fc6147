"""Pool: a set of workers behind the ``concurrent.futures.Executor`` interface.

    submit(fn, *args) --> Task + Handle --> TaskBook.enqueue (pickled in the caller's thread)
                                                  |
                                                  v
                                  pending (FIFO) --poke--> the engine pulls with take()
                                                                 |   marks the handle RUNNING
                                                                 v
          Handle <-- TaskBook.finished(task, ok, value) <-- engine thread (I/O, worker, inline)

The pool is the public face: it checks what it is given, makes the engine
(``backends``) and the ledger of its tasks (``_tasks.TaskBook``), and
connects them. The ledger owns every task's state; engines only move tasks
and report how each ended. Every submitted task ends in exactly one
terminal state, also when the pool shuts down (pending tasks run, or are
cancelled; stragglers past a shutdown deadline are stopped and fail with a
clear error).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from . import _lifetime, _mapping
from ._arguments import StartMethod, check_workers, worker_setup
from ._checks import check_seconds
from ._lifetime import ShutdownSummary
from ._map_port import MapPort
from ._task import Task, short_name, unwrap_parallel
from ._tasks import RUNNING, TaskBook, closed_message
from .backends import create_backend, resolve_kind
from .backends.base import Backend, WeakSink
from .errors import CircuitOpenError
from .handle import Handle, TaskState, next_task_id

if TYPE_CHECKING:
    from ._options import BackendSpec
    from ._typing import ParallelCallable
    from .health import HealthReport
    from .observe.events import Listener
    from .observe.metrics import Metrics, TaskInfo
    from .policies import CircuitBreaker, Retry

__all__ = ["Pool", "ShutdownSummary"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_pool_numbers = itertools.count(1)


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

    ``start`` is how worker processes begin. ``"auto"`` (the default) forks
    them from a copy of this process taken as the pool is created - so they
    have its modules and globals, and start in about a millisecond - when
    that is safe: on Linux, with no other Python thread running (the case
    in which CPython itself does not warn about fork) and no CUDA context;
    otherwise each worker is a fresh interpreter. ``"fork"`` always forks,
    ``"spawn"`` always starts fresh interpreters. ``pool.start`` says which
    one the pool uses (docs/guide.md says what a forked worker inherits).

    ``forward_logs`` (on by default): what process workers log reaches this
    process's ``logging`` - the logger of the same name, its handlers and
    levels - with ``task_id``, ``task_name`` and ``worker_pid`` on each
    record, and what they print reaches this process's ``sys.stdout`` and
    ``sys.stderr``; a task's records and output arrive before its result.
    """

    def __init__(
        self,
        workers: int | None = None,
        backend: BackendSpec = "auto",
        name: str | None = None,
        *,
        min_workers: int | None = None,
        max_workers: int | None = None,
        idle_timeout: float | None = None,
        max_pending: int | None = None,
        pending_timeout: float | None = None,
        max_tasks_per_worker: int | None = None,
        memory_limit: int | str | None = None,
        memory_limit_action: Literal["recycle", "kill"] = "recycle",
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        start: StartMethod = "auto",
        forward_logs: bool = True,
    ) -> None:
        count, least, setup = worker_setup(
            workers,
            min_workers,
            max_workers,
            idle_timeout,
            max_tasks_per_worker,
            memory_limit,
            memory_limit_action,
            initializer,
            initargs,
            start,
            forward_logs,
        )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        max_pending = check_workers(max_pending, "max_pending")
        if pending_timeout is not None:
            pending_timeout = check_seconds("pending_timeout", pending_timeout)
        if _lifetime.exiting:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        self.name = name or f"makeparallel-{next(_pool_numbers)}"
        self._pid = os.getpid()  # a process forked from this one has a copy, and no workers
        self.workers = count  # the most workers this pool runs at once
        self._min_workers = least  # the fewest it keeps
        self._tasks = TaskBook(self, max_pending, pending_timeout)
        self._canceller = self._tasks.cancel_running  # one bound method for every handle
        self._backend: Backend = create_backend(backend, count, self.name, setup)
        self._tasks.backend = self._backend
        # Handles ask the engine to wait for them only if it can (the process engine).
        reads_here = type(self._backend).read_here is not Backend.read_here
        self._reader = self._tasks.read_here if reads_here else None
        self.backend = self._backend.kind if not isinstance(backend, str) else resolve_kind(backend)
        #: how worker processes start: "fork" or "spawn" ("auto" chose one); None without them
        self.start = self._backend.setup.start if self._backend.kind == "process" else None
        # The engine's threads see the tasks through a weak reference, so a pool that
        # nobody holds any more (and that has no unfinished work) is freed at once,
        # and its workers and threads go with it, as a ProcessPoolExecutor's do.
        # Nothing the pool holds refers back to it: no cycle waits for the collector.
        self._backend.start(WeakSink(self._tasks))
        self._abandon = weakref.finalize(self, self._backend.abandon)
        self._abandon.atexit = False  # at exit, _lifetime finishes the submitted work
        _lifetime.track(self)

    # -- submitting --------------------------------------------------------

    # A @parallel function submitted here runs as its plain function: its Handle holds
    # the function's value, not a Handle (the first overload says so).
    @overload
    def submit(
        self, fn: ParallelCallable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Handle[R]: ...

    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Handle[R]: ...

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Handle[Any]:
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
            next_task_id(), name or short_name(fn), metadata, self._canceller, self._reader
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
            self._tasks.refuse(
                task,
                CircuitOpenError(
                    f"{task.describe()} did not run: circuit breaker {circuit_breaker.name!r} "
                    f"is open after {circuit_breaker.failures} failures in a row; it lets a "
                    f"trial call through in {circuit_breaker.retry_after():.1f} s",
                    **task.context(),
                ),
            )
            return handle
        self._tasks.enqueue(task)
        return handle

    def _check_open(self) -> None:
        if self._tasks.generation != _lifetime.generation:
            raise RuntimeError(
                f"pool {self.name!r} belongs to process {self._pid}; this process was forked "
                "from it and has none of its workers or threads: create a new pool here "
                "(the default pool of @parallel and parallel_map is new in every forked process)"
            )
        if self._tasks.state != RUNNING:
            raise RuntimeError(closed_message(self.name))

    @property
    def _maps(self) -> MapPort:
        """What a map sees of this pool (one per map: a pool holding it would be a cycle)."""
        return MapPort(self)

    @property
    def _open(self) -> bool:
        return self._tasks.state == RUNNING

    @property
    def _max_workers(self) -> int:
        # The standard executors' name for their size: dask.compute(scheduler=pool) reads it
        # to decide how many tasks to keep in flight.
        return self.workers

    @property
    def _broken(self) -> BaseException | None:
        # The name the standard executors give it; code that polls it finds it here.
        return self._tasks.broken_by

    # -- batches -----------------------------------------------------------

    @overload
    def map(
        self,
        fn: ParallelCallable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[R]: ...

    @overload
    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[R]: ...

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator[R]:
        """Like ``Executor.map``: results in order; input is read lazily, a bounded window ahead."""
        return _mapping.executor_map(self._maps, fn, iterables, timeout, chunksize)

    @overload
    def imap(
        self,
        fn: ParallelCallable[[T], R],
        iterable: Iterable[T],
        *,
        chunksize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[R]: ...

    @overload
    def imap(
        self,
        fn: Callable[[T], R],
        iterable: Iterable[T],
        *,
        chunksize: int | None = None,
        ordered: bool = True,
    ) -> Iterator[R]: ...

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
            _mapping.imap_batches(self._maps, fn, iterable, chunksize=chunksize, ordered=ordered)
        )

    def _refuse_to_wait_here(self, what: object) -> None:
        self._tasks.refuse_to_wait_here(what)

    # -- size and health -------------------------------------------------------

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

    def health(self) -> HealthReport:
        """A typed, JSON-ready report (``.to_dict()``): workers, queue, recent crashes,
        and ``healthy`` with the ``reasons`` when it is not. Cheap enough to poll."""
        from .health import report  # (loaded when first asked: importing it costs start-up time)

        engine = self._backend.stats()
        tasks = self._tasks
        with tasks.lock:
            state = {"running": "running", "closing": "shutting_down", "closed": "closed"}[
                tasks.state
            ]
            running = list(tasks.running.values())
            queue_depth = len(tasks.pending)
            retrying = len(tasks.retrying)
            broken = tasks.broken_by
        expected = self._min_workers if self.backend in ("process", "thread") else engine.alive
        return report(
            self.name,
            self.backend,
            state,
            broken,
            expected,
            engine,
            running,
            queue_depth,
            retrying,
            self._backend.workers_info(),
        )

    def workers_info(self) -> list[dict[str, Any]]:
        """One record per worker process: ``pid``, ``state`` (starting, idle, busy...),
        ``tasks_done``, the running ``task_id`` and how many tasks are ``queued`` behind it.

        Empty for engines whose workers are not processes of this pool.
        """
        return self._backend.workers_info()

    # -- observability (observe/) ------------------------------------------------------

    def metrics(self) -> Metrics:
        """Counts since the pool was created, what runs and waits now, recent wait and
        run time percentiles, per function too: a frozen ``Metrics`` (``.to_dict()``)."""
        from .observe.metrics import build

        tally, functions = self._tasks.recorder.snapshot()
        engine = self._backend.stats()
        with self._tasks.lock:
            running = len(self._tasks.running)
            queued = len(self._tasks.pending) + len(self._tasks.retrying)
        return build(
            tally,
            functions,
            running=running,
            queued=queued,
            workers=self.workers,
            crashes=engine.crashes_total,
            restarts=engine.restarts_total,
        )

    def tasks(self) -> list[TaskInfo]:
        """The tasks now running, then those queued or waiting to retry, in order."""
        from .observe.metrics import TaskInfo

        book = self._tasks
        with book.lock:
            tasks = [*book.running.values(), *book.pending, *book.retrying.values()]
        listed = []
        for task in tasks:
            handle = task.handle
            if handle.done():
                continue  # cancelled while queued: it leaves the queue when a worker looks
            running = handle.state is TaskState.RUNNING
            listed.append(
                TaskInfo(
                    task_id=task.id,
                    name=handle.name,
                    function=handle._function,
                    state="running" if running else "pending",
                    worker=handle.worker if running else None,
                    elapsed=handle.elapsed if running else None,
                    attempts=handle.attempts,
                    progress=handle.progress,
                    metadata=handle.metadata,
                )
            )
        return listed

    def add_listener(self, fn: Listener) -> Listener:
        """Call ``fn(event)`` with each ``TaskEvent`` of this pool, on makeparallel's
        events thread (a listener that raises is logged once); returns ``fn``."""
        from .observe.events import check_listener

        self._tasks.recorder.listeners.append(check_listener(fn))
        return fn

    def remove_listener(self, fn: Listener) -> None:
        """Stop calling ``fn``; a no-op if it was not added."""
        try:
            self._tasks.recorder.listeners.remove(fn)
        except ValueError:
            pass

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
        ``cancel_futures``, the ``Executor`` name) cancels them - all but the
        few that idle or starting workers would have begun by now. With
        ``wait``, block until the tasks end; with a ``timeout``, tasks still
        running after it are stopped and fail with ``TaskError``. Returns
        what happened to the tasks that had not ended when it was called.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout}")
        tasks = self._tasks
        if tasks.generation != _lifetime.generation:
            return ShutdownSummary()  # a forked process's copy: the workers are the parent's
        deadline = None if timeout is None else time.monotonic() + timeout
        closing = tasks.close(cancel_pending or cancel_futures, self.workers)
        if closing is None:
            return ShutdownSummary()  # shutting down twice is harmless (atexit does it)
        unfinished, _ = closing
        if not wait:
            tasks.after_change()  # closes the engine now if nothing is left to run
            return ShutdownSummary.of(unfinished, stopped=())
        stragglers = tasks.wait_for_end(deadline)
        if stragglers:
            self._backend.close(deadline, wait=False)  # no replacement workers from here on
            for task in stragglers:
                tasks.stop_straggler(task)
        self._backend.close(deadline)
        self._abandon.detach()  # closed: nothing is left to let go of when it is collected
        tasks.closed()
        return ShutdownSummary.of(unfinished, stopped=stragglers)

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

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """As ``__exit__``, with the shutdown on a thread of its own: the event loop runs on."""
        from ._awaiting import exit_pool

        await exit_pool(self, exc_type)

    def __repr__(self) -> str:
        return (
            f"<Pool name={self.name!r} backend={self.backend!r} workers={self.workers} "
            f"state={self._tasks.state}>"
        )


def live_pools() -> list[Pool]:
    return _lifetime.live_pools()
