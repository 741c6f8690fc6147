"""The process engine: makeparallel's own worker processes, one socket each.

    submitting thread --prepare (pickle, codec)--> Pool queue
                                                      |
          poke: hand_out (exchange) <-----------------+
                |  an idle (or starting) worker: a non-blocking write from this thread
                v
      +-- worker 0 <==socket==+
      +-- worker 1 <==socket==+==> the I/O thread (reactor): answers, exits, timers;
      +-- worker N <==socket==+    it alone starts, kills and reaps worker processes
                                   |
                                   +-> Sink.finished(task, ok, value) -> the pool -> Handle
      caller in result() --read_here (claims)--> reads its one task's answer itself

Why our own loop and not ``ProcessPoolExecutor``: the parent must be able to
kill and replace *one* worker (timeout, cancel, crash, memory) without
breaking the pool, and know exactly which task a dead worker was running.

The modules of this package, one job each: ``workers`` (a worker's states
and the table of moves), ``dispatch`` (which task goes where: decisions
only), ``exchange`` (what any thread may do to the workers, under one lock),
``reactor`` (the I/O thread), ``claims`` (a caller reading its own answer),
``launch`` and ``forkserver`` (starting and ending processes), ``memory``
(the memory limit), ``codec`` (tasks to frames, answers to outcomes). This
module only connects the pool's calls to them.
"""

from __future__ import annotations

import sys
from typing import Any

from ..._task import Task
from ..._worker import serialize, wire
from ...errors import SerializationError
from ..base import NO_SETUP, Backend, EngineStats, Sink, WorkerSetup
from . import claims
from .codec import Encoder
from .dispatch import has_room
from .exchange import Exchange
from .forward import LevelWatch
from .launch import Launcher, parent_authkey
from .memory import MemoryGuard
from .reactor import Reactor
from .workers import WorkerState


class ProcessBackend(Backend):
    kind = "process"

    def __init__(self, workers: int, pool_name: str, setup: WorkerSetup = NO_SETUP) -> None:
        super().__init__(workers, pool_name, setup)
        self._encoder = Encoder()
        self._authkey = parent_authkey()  # what the workers were told
        self._modules: dict[str, None] = {}  # modules tasks' functions came from so far
        self._levels: LevelWatch | None = None  # forward_logs: the levels workers have
        self._started = False

    def start(self, sink: Sink) -> None:
        setup = self.setup
        initializer: bytes | None = None
        if setup.initializer is not None:
            try:
                initializer = serialize.dumps((setup.initializer, setup.initargs))
            except Exception as problem:
                raise SerializationError(
                    f"pool {self.pool_name!r}: its initializer or initargs cannot be sent to "
                    f"worker processes ({type(problem).__name__}: {problem}); define the "
                    "initializer at module level and pass plain data"
                ) from problem
        least = setup.min_workers if setup.min_workers is not None else self.workers
        # start="fork": the first worker and the fork server are forked here, before
        # this pool has a thread of its own.
        if setup.start == "fork":
            # what the forked workers' __main__ will have: its functions go by name
            self._encoder.main_copy.update(_main_names())
        if setup.forward_logs:
            self._levels = LevelWatch()
        forward = None if self._levels is None else self._levels.sent
        launcher = Launcher(self.pool_name, initializer, setup.start, least, forward)
        launcher.main_copy = self._encoder.main_copy
        launcher.preload = self._modules
        memory = MemoryGuard(setup.memory_limit, setup.memory_kill, launcher.shares_pages)
        self._reactor = Reactor(self.pool_name, launcher)
        self._ex = Exchange(sink, setup, self.workers, memory, self._reactor)
        self._reactor.ex = self._ex
        self._started = True
        first = launcher.first
        self._reactor.start(first, least - (1 if first is not None else 0))

    # -- called from any thread ------------------------------------------------------

    def prepare(self, task: Task) -> None:
        self._encoder.prepare(task)
        if self._levels is not None:
            changed = self._levels.changed()
            if changed is not None:
                self._reactor.launcher.forward = changed
                body = serialize.dumps(changed)
                self._ex.broadcast(wire.frame(wire.LEVELS, 0, (body,)))
        module = _imported_from(task.fn)
        if module is not None and module not in self._modules:
            # The first task of this module's functions: while its worker imports the
            # module, the other workers import it too, and new workers as they start.
            self._modules[module] = None
            if self._started:
                self._ex.broadcast(wire.frame(wire.PRELOAD, 0, (module.encode(),)))
        if self._authkey is None and "multiprocessing.process" in sys.modules:
            # multiprocessing was loaded since the workers started: they get its key
            # before this task, which may carry an object its Manager serves
            self._authkey = parent_authkey()
            if self._authkey is not None and self._started:
                self._ex.broadcast(wire.frame(wire.AUTHKEY, 0, (self._authkey,)))

    def poke(self) -> None:
        ex = self._ex
        if not (self._reactor.current() or has_room(ex.table, ex.presend)):
            # Every worker is busy: the I/O thread hands this task out when one answers
            # (a worker is made idle before the queue is looked at, so nothing is missed).
            # Read without the lock, to keep a submit cheap.
            ex.io.hurry()
            if ex.least != ex.most:
                with ex.table.lock:
                    ex._grow_locked()
            return
        ex.hand_out()

    def stop_task(self, task: Task, error: BaseException) -> bool:
        stop = self._ex.stop_task(task, error)
        if stop is not None:
            self._reactor.stop(*stop)
        return True

    def read_here(self, task: Task, deadline: float | None) -> None:
        claims.read_here(self._ex, self._reactor.poller, task, deadline)

    def close(self, deadline: float | None, wait: bool = True) -> None:
        if not self._reactor.alive():
            return  # already closed
        self._reactor.close(deadline, wait)

    def delivers_here(self) -> bool:
        return self._reactor.current()

    def abandon(self) -> None:
        self._reactor.abandon()

    def resize(self, workers: int) -> None:
        ex = self._ex
        with ex.table.lock:
            ex.least = ex.most = workers
            self.workers = workers
        self._reactor.call(ex.apply_size)

    def stats(self) -> EngineStats:
        ex = self._ex
        with ex.table.lock:
            restarts, crashes = ex.history()
            alive = ex.table.count(WorkerState.IDLE, WorkerState.BUSY, WorkerState.CLAIMED)
            starting = ex.table.count(WorkerState.STARTING)
        return EngineStats(
            alive,
            starting,
            restarts,
            crashes,
            restarts_total=ex.restarts_total,
            crashes_total=ex.crashes_total,
        )

    def worker_pids(self) -> list[int]:
        with self._ex.table.lock:
            return [w.proc.pid for w in self._ex.table.all if w.state is not WorkerState.GONE]

    def workers_info(self) -> list[dict[str, Any]]:
        return self._ex.describe_workers()


def _main_names() -> dict[str, object]:
    """The functions and classes ``__main__`` has now, by name."""
    main = sys.modules.get("__main__")
    return (
        {
            name: value
            for name, value in vars(main).items()
            if callable(value) and getattr(value, "__module__", None) == "__main__"
        }
        if main is not None
        else {}
    )


def _imported_from(fn: object) -> str | None:
    """The module a worker imports to find ``fn`` (None: it travels by value)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "<")
    if not isinstance(module, str) or module == "__main__" or "<" in qualname:
        return None  # a lambda or a local function is sent whole, with its globals
    return module
