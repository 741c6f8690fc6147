"""The small interface between a pool and the engine that runs its tasks.

The pool owns every task's state; an engine only moves tasks to where they
run and reports how each ended. Engines *pull*: whenever one has a free
worker it calls ``sink.take()``, and the pool calls ``poke()`` after queueing
work so an idle engine knows to pull.
"""

from __future__ import annotations

import abc
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from .._task import Task


class Sink(Protocol):
    """What an engine sees of its pool."""

    def take(self, ahead: bool = False) -> Task | None:
        """The next task to run, already marked running; None when nothing waits.

        ``ahead``: the task will wait behind another one on a busy worker, so
        take it only if it has no timeout (a timeout's clock starts here).
        """

    def take_some(self, limit: int, ahead: bool = False) -> list[Task]:
        """Up to ``limit`` tasks for one worker, in queue order; all but the
        first wait behind another one (``ahead`` as for ``take``)."""

    def has_pending(self) -> bool: ...

    def pending_count(self) -> int: ...

    def finished(self, task: Task, ok: bool, value: Any) -> None:
        """Report how a task ended: its value, or the exception to raise."""

    def broken(self, error: BaseException) -> None:
        """The engine cannot run anything any more (its workers cannot start)."""

    def worker_event(self, kind: str, pid: int | None, reason: str | None = None) -> None:
        """A worker started (``worker_started``) or ended (``worker_exited``, and why)."""


class WeakSink:
    """A pool as its engine sees it, without keeping it alive; once it is gone,
    nothing waits and nothing is reported.

    An engine's threads see the pool this way, so that a pool its program no
    longer holds is collected, and its workers and threads go with it.
    """

    __slots__ = ("_sink",)

    def __init__(self, sink: Sink) -> None:
        self._sink = weakref.ref(sink)

    def take(self, ahead: bool = False) -> Task | None:
        sink = self._sink()
        return None if sink is None else sink.take(ahead)

    def take_some(self, limit: int, ahead: bool = False) -> list[Task]:
        sink = self._sink()
        return [] if sink is None else sink.take_some(limit, ahead)

    def has_pending(self) -> bool:
        sink = self._sink()
        return sink is not None and sink.has_pending()

    def pending_count(self) -> int:
        sink = self._sink()
        return 0 if sink is None else sink.pending_count()

    def finished(self, task: Task, ok: bool, value: Any) -> None:
        sink = self._sink()
        if sink is not None:
            sink.finished(task, ok, value)

    def broken(self, error: BaseException) -> None:
        sink = self._sink()
        if sink is not None:
            sink.broken(error)

    def worker_event(self, kind: str, pid: int | None, reason: str | None = None) -> None:
        sink = self._sink()
        if sink is not None:
            sink.worker_event(kind, pid, reason)


class WorkerSetup:
    """How each worker starts and how long it lives (never changed once made)."""

    __slots__ = (
        "forward_logs",
        "idle_timeout",
        "initargs",
        "initializer",
        "max_tasks",
        "memory_kill",
        "memory_limit",
        "min_workers",
        "start",
    )

    def __init__(
        self,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks: int | None = None,  # recycle a worker after this many tasks
        min_workers: int | None = None,  # with max_workers: scale between the two
        idle_timeout: float | None = None,  # retire a worker idle this long (not below min)
        memory_limit: int | None = None,  # bytes of resident memory per worker process
        memory_kill: bool = False,  # over the limit: kill at once (else recycle after the task)
        start: str = "auto",  # how process workers start: "auto", "spawn" (fresh) or "fork"
        forward_logs: bool = True,  # process workers' log records and output go to the parent
    ) -> None:
        self.initializer = initializer
        self.initargs = initargs
        self.max_tasks = max_tasks
        self.min_workers = min_workers
        self.idle_timeout = idle_timeout
        self.memory_limit = memory_limit
        self.memory_kill = memory_kill
        self.start = start
        self.forward_logs = forward_logs

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkerSetup):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def shapes_workers(self) -> bool:
        """Whether it asks anything of how workers start and live (an executor's cannot)."""
        return self.starting("auto").forwarding(True) != NO_SETUP

    def forwarding(self, forward_logs: bool) -> WorkerSetup:
        """The same setup with ``forward_logs`` set so."""
        copy = self.starting(self.start)
        copy.forward_logs = forward_logs
        return copy

    def starting(self, start: str) -> WorkerSetup:
        """The same setup with workers started by ``start``."""
        copy = WorkerSetup.__new__(WorkerSetup)
        for name in self.__slots__:
            setattr(copy, name, getattr(self, name))
        copy.start = start
        return copy

    def run_initializer(self) -> None:
        if self.initializer is not None:
            self.initializer(*self.initargs)


NO_SETUP = WorkerSetup()


class EngineStats:
    """What an engine knows about its workers, for ``Pool.health()``."""

    __slots__ = (
        "alive",
        "crashes_last_minute",
        "crashes_total",
        "restarts_last_minute",
        "restarts_total",
        "starting",
        "stuck",
    )

    def __init__(
        self,
        alive: int,
        starting: int = 0,
        restarts_last_minute: int = 0,
        crashes_last_minute: int = 0,
        stuck: int = 0,  # threads still running a stopped task (threads cannot be killed)
        restarts_total: int = 0,  # since the pool began
        crashes_total: int = 0,
    ) -> None:
        self.alive = alive
        self.starting = starting
        self.restarts_last_minute = restarts_last_minute
        self.crashes_last_minute = crashes_last_minute
        self.stuck = stuck
        self.restarts_total = restarts_total
        self.crashes_total = crashes_total


class Backend(abc.ABC):
    kind: str = ""

    def __init__(self, workers: int, pool_name: str, setup: WorkerSetup = NO_SETUP) -> None:
        self.workers = workers
        self.pool_name = pool_name
        self.setup = setup

    @abc.abstractmethod
    def start(self, sink: Sink) -> None: ...

    def prepare(self, task: Task) -> None:  # noqa: B027 - most engines need no preparation
        """Called in the submitting thread before the task is queued (may raise)."""

    def stats(self) -> EngineStats:
        return EngineStats(alive=self.workers)

    def workers_info(self) -> list[dict[str, Any]]:
        """One record per worker (process engine); empty where workers are not the pool's own."""
        return []

    def resize(self, workers: int) -> None:
        """Run with exactly ``workers`` workers from now on."""
        raise ValueError(f"the {self.kind} engine has no workers to resize")

    @abc.abstractmethod
    def poke(self) -> None:
        """Work was queued: pull it if a worker is free."""

    def read_here(self, task: Task, deadline: float | None) -> None:  # noqa: B027
        """Optionally wait for ``task`` in the calling thread; the caller then waits as usual."""

    def stop_task(self, task: Task, error: BaseException) -> bool:
        """Stop a running task, reporting ``error`` for it. False when the engine cannot."""
        return False

    def delivers_here(self) -> bool:
        """Whether this thread is the one that delivers the pool's results."""
        return False

    def abandon(self) -> None:  # noqa: B027 - engines without threads have nothing to release
        """The pool was garbage-collected: let the workers go, as ``close`` would.

        Called from a finalizer, in whatever thread the garbage collector ran,
        which may hold this engine's locks: take none.
        """

    @abc.abstractmethod
    def close(self, deadline: float | None, wait: bool = True) -> None:
        """Release the workers once no task runs; stop any still running at ``deadline``."""
