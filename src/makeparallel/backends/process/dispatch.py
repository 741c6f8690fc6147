"""Which waiting tasks go to which worker, and how many at once: decisions only.

    the pool's queue + the engine's backlog --take_batch--> one write to one worker
                                                ^
          choose(): an idle worker first, then a starting one, then (on the
          I/O thread only) the least busy worker with room behind its task

Short tasks are sent *ahead*: while a worker runs one task, a few
milliseconds' worth of further tasks wait in its socket, so it never sits
idle for a round trip to the parent. ``Pace`` measures the time between a
worker's answers and says how many tasks that is. A worker answers in the
order it got its tasks, so the parent always knows which one runs: the
oldest unanswered one.

The timeout rule: a task with a timeout never waits behind another task (its
clock starts when it is handed out), so it only ever goes, first in its
write, to an idle worker. ``Task.may_wait`` is that rule; the pool applies it
to its queue and ``take_batch`` to the engine's backlog.

Nothing here does I/O or takes a lock: the engine calls these functions with
its table lock held, and the tests call them with plain records.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from ..._task import Task
from ..._worker.wire import SPIN_SECONDS
from .workers import Worker, WorkerState, WorkerTable

AHEAD_SECONDS = 0.005  # queue about this much work behind a worker's running task
MAX_AHEAD = 64  # tasks on one worker at once, the running one included
SMOOTHING = 0.2  # weight of the newest sample in the mean time per task
OUTLIER = 10.0  # a sample counts as at most this many times the mean


class Pace:
    """How long a task takes, from the time between a worker's answers.

    ``ahead`` is how many tasks a worker may hold at once (1: no sending
    ahead); ``quick`` whether answers come back faster than a wake-up costs,
    so that a waiting caller should poll a while before it sleeps.
    """

    __slots__ = ("ahead", "last_quick", "mean")

    def __init__(self) -> None:
        self.mean: float | None = None
        self.last_quick = False  # the latest answer took under SPIN_SECONDS
        self.ahead = 1

    def observe(self, seconds: float) -> None:
        mean = self.mean
        if mean is None:
            mean = seconds
        else:
            # One slow task raises the estimate tenfold at most; a run of them
            # soon stops the sending ahead.
            mean += SMOOTHING * (min(seconds, OUTLIER * mean) - mean)
        self.mean = mean
        self.last_quick = seconds < SPIN_SECONDS
        self.ahead = max(1, min(MAX_AHEAD, int(AHEAD_SECONDS / max(mean, 1e-6))))

    @property
    def quick(self) -> bool:
        # The latest answer counts too: the mean takes about 20 answers to come
        # down after one long task, and a caller would sleep through each of them.
        return self.last_quick or (self.mean is not None and self.mean < SPIN_SECONDS)


class Source(Protocol):
    """Where waiting tasks come from: the pool (``Sink`` in ``backends.base``)."""

    def take_some(self, limit: int, ahead: bool = False) -> list[Task]: ...

    def pending_count(self) -> int: ...


def choose(
    workers: Sequence[Worker],
    idle: list[Worker],
    *,
    ahead: int,
    presend: bool,
    from_io: bool,
    max_tasks: int | None = None,
) -> Worker | None:
    """The worker the next write goes to, or None when none has room.

    An idle worker stays on ``idle`` until something is sent to it.
    ``presend``: a starting worker may hold one task while it starts (there
    is no initializer to wait for). Only the I/O thread fills busy workers'
    queues: it does so as their answers come in, many tasks per write, while
    a submitting thread only wakes idle or starting workers. A worker that
    has been sent ``max_tasks`` tasks gets no more: it is recycled once done.
    """
    if idle:
        return idle[-1]
    spent = (lambda w: False) if max_tasks is None else (lambda w: w.sent >= max_tasks)
    if presend:
        for worker in workers:
            if worker.state is WorkerState.STARTING and not worker.inflight and not spent(worker):
                return worker
    if ahead <= 1 or not from_io:
        return None
    best: Worker | None = None
    for worker in workers:
        if (
            worker.state is WorkerState.BUSY
            and len(worker.inflight) < ahead
            and not spent(worker)
            and (best is None or len(worker.inflight) < len(best.inflight))
        ):
            best = worker
    return best


def room(
    worker: Worker,
    *,
    ahead: int,
    allowance: int,
    one_at_a_time: bool,
    waiting: Callable[[], int],
    ready: Callable[[], int],
) -> int:
    """How many tasks one write to ``worker`` carries.

    At most ``ahead`` on the worker at once and ``allowance`` more before it
    is recycled; one when tasks go one at a time (a memory limit is checked
    between tasks) or the worker is still starting; and no more than its fair
    share of the ``waiting()`` tasks among the ``ready()`` workers, so that
    one write does not leave the others idle (counted only when it matters:
    this runs for every write).
    """
    if one_at_a_time or worker.state is WorkerState.STARTING:
        return 1
    space = min(ahead - len(worker.inflight), allowance)
    if space <= 1:
        return 1
    queued = waiting()
    if queued <= 1:
        return 1
    return min(space, 1 + -(-(queued - 1) // max(1, ready())))


def take_batch(
    backlog: deque[Task], source: Source, count: int, first_may_be_timed: bool
) -> list[Task]:
    """Up to ``count`` tasks for one write, in line order: the backlog (tasks a
    dead worker handed back) first, then the pool's queue.

    Applies the timeout rule: only the first task of a write to an idle
    worker (``first_may_be_timed``) may have a timeout; the batch ends before
    any other timed task, which waits for an idle worker.
    """
    tasks: list[Task] = []
    while backlog and len(tasks) < count:
        if (tasks or not first_may_be_timed) and not backlog[0].may_wait():
            return tasks
        tasks.append(backlog.popleft())
    if len(tasks) < count:
        tasks += source.take_some(count - len(tasks), ahead=bool(tasks) or not first_may_be_timed)
    return tasks


def ready_count(workers: Iterable[Worker]) -> int:
    """Workers that have started and are not leaving."""
    return sum(1 for w in workers if w.state in _READY)


_READY = frozenset({WorkerState.IDLE, WorkerState.BUSY, WorkerState.CLAIMED})


def has_room(table: WorkerTable, presend: bool) -> bool:
    """Whether a submitting thread could send a task now: an idle worker, or a starting one
    with none yet. Read without the lock (a hint: see ``ProcessBackend.poke``)."""
    if table.idle:
        return True
    return presend and any(w.state is WorkerState.STARTING and not w.inflight for w in table.all)
