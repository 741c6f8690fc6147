"""Worker processes as the parent sees them: one record each, one state, one table of moves.

    STARTING --ready--> IDLE <--last answer / a task sent--> BUSY <--claim / release--> CLAIMED
        |                 |                                    |                          |
        +--------+--------+------------------+-----------------+--------------------------+
                 v                           v
             RETIRING (told to leave)    STOPPING (being killed, or frozen to be checked)
                 |                           |   (its task had finished: back to BUSY / IDLE)
                 v                           v
                GONE  <-- from any state: its process ended, or its socket broke

Every move goes through ``move``; a move the table does not allow raises
``InvalidWorkerMove``, as ``Handle`` does for tasks. The states say what
each thread may do with a worker:

* sending: any thread holding the table lock may write to an IDLE, STARTING
  or BUSY worker (a non-blocking write; the I/O thread finishes a partial
  one). Nothing is sent to a worker in any other state.
* reading: the I/O thread reads a worker's socket, except while it is
  CLAIMED by a caller waiting for its one task (``claims``); ``reading``
  marks the moment the I/O thread is at it, so a claim cannot begin then.
* killing and reaping: only the I/O thread.

All the fields of a worker, and the table itself, are read and written with
``WorkerTable.lock`` held, except ``reader`` (the reading thread's own) and
the process and socket objects, which never change.
"""

from __future__ import annotations

import enum
import socket
import subprocess
import threading
import time
from collections import deque

from ..._task import Task
from ..._worker import wire
from .forkserver import ForkedProcess

Process = subprocess.Popen[bytes] | ForkedProcess


class WorkerState(enum.Enum):
    STARTING = "starting"  # its process runs, it has not said it is ready
    IDLE = "idle"  # ready, no task
    BUSY = "busy"  # runs its first task in flight; the others wait in its socket
    CLAIMED = "claimed"  # busy with one task, whose caller reads the answer itself
    RETIRING = "retiring"  # told to leave (end of stream on its socket); no task
    STOPPING = "stopping"  # being killed, or frozen while the pool checks what it ran
    GONE = "gone"  # its process ended or its socket broke: no more I/O with it


_S = WorkerState
_MOVES: dict[WorkerState, frozenset[WorkerState]] = {
    _S.STARTING: frozenset({_S.IDLE, _S.BUSY, _S.RETIRING, _S.STOPPING, _S.GONE}),
    _S.IDLE: frozenset({_S.BUSY, _S.RETIRING, _S.STOPPING, _S.GONE}),
    _S.BUSY: frozenset({_S.IDLE, _S.CLAIMED, _S.RETIRING, _S.STOPPING, _S.GONE}),
    _S.CLAIMED: frozenset({_S.BUSY, _S.IDLE, _S.RETIRING, _S.STOPPING, _S.GONE}),
    _S.RETIRING: frozenset({_S.STOPPING, _S.GONE}),
    _S.STOPPING: frozenset({_S.BUSY, _S.IDLE, _S.RETIRING, _S.GONE}),
    _S.GONE: frozenset(),
}
SENDABLE = frozenset({_S.STARTING, _S.IDLE, _S.BUSY})
LIVE = frozenset({_S.STARTING, _S.IDLE, _S.BUSY, _S.CLAIMED})  # counted towards the pool's size


class InvalidWorkerMove(RuntimeError):
    """A worker was asked to make a state change its life does not allow."""


class Worker:
    """One worker process: its socket, the tasks sent to it, and its state."""

    __slots__ = (
        "boot_error",
        "booted",
        "cpu_sample",
        "functions",
        "head_since",
        "idle_since",
        "index",
        "inflight",
        "label",
        "outbox",
        "pidfd",
        "proc",
        "reader",
        "reading",
        "sent",
        "sock",
        "started_at",
        "state",
        "tasks_done",
    )

    def __init__(self, index: int, proc: Process, sock: socket.socket) -> None:
        self.index = index
        self.proc = proc
        self.sock = sock
        self.pidfd: int | None = None  # readable once the process has ended (Linux)
        self.label = f"pid {proc.pid}"
        self.state = WorkerState.STARTING
        self.booted = False  # it said it was ready, at some point
        self.boot_error = ""  # what it said when it failed to start
        self.inflight: deque[Task] = deque()  # sent, not answered; the first one runs
        self.outbox: list[wire.Buffer] = []  # what a partial write left to send
        self.functions: dict[int, None] = {}  # keys of the functions it has, as it orders them
        self.reader = wire.FrameReader()
        self.reading = False  # the I/O thread is reading its socket right now
        self.sent = 0  # tasks sent over its life (max_tasks_per_worker)
        self.tasks_done = 0
        self.head_since = 0.0  # when its running task started, as far as the parent knows
        self.idle_since = 0.0
        self.cpu_sample: tuple[float, float] | None = None  # (when, its CPU seconds then)
        self.started_at = time.monotonic()

    @property
    def task(self) -> Task | None:
        """The task this worker runs, if any."""
        return self.inflight[0] if self.inflight else None

    def __repr__(self) -> str:
        return f"<Worker {self.label} {self.state.value} tasks={len(self.inflight)}>"


def move(worker: Worker, new: WorkerState) -> None:
    """Change ``worker``'s state; called with the table lock held."""
    if new is worker.state:
        return
    if new not in _MOVES[worker.state]:
        raise InvalidWorkerMove(
            f"worker {worker.label} cannot move from {worker.state.value} to {new.value}"
        )
    worker.state = new


class WorkerTable:
    """The pool's workers, idle ones, and the tasks handed back by dead ones.

    ``lock`` guards everything here and every field of every worker. Lock
    order: this lock, then the pool's, then a handle's; never the other way.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.all: list[Worker] = []
        self.idle: list[Worker] = []  # IDLE workers, the most recently idle last
        self.backlog: deque[Task] = deque()  # handed back by a dead worker: they go first
        self.planned = 0  # workers asked for whose processes have not started yet

    def add(self, worker: Worker) -> None:
        self.all.append(worker)

    def remove(self, worker: Worker) -> None:
        if worker in self.idle:
            self.idle.remove(worker)
        if worker in self.all:
            self.all.remove(worker)

    def rest(self, worker: Worker, now: float) -> None:
        """``worker`` has no task and stays: it waits on the idle list."""
        move(worker, WorkerState.IDLE)
        worker.idle_since = now
        self.idle.append(worker)

    def busy(self, worker: Worker) -> None:
        """``worker`` has been given tasks."""
        if worker.state is WorkerState.IDLE:
            if worker in self.idle:
                self.idle.remove(worker)
            move(worker, WorkerState.BUSY)

    def leave(self, worker: Worker, state: WorkerState) -> None:
        """``worker`` is retiring, stopping or gone: it takes no more work."""
        if worker in self.idle:
            self.idle.remove(worker)
        move(worker, state)

    def live(self) -> list[Worker]:
        return [w for w in self.all if w.state in LIVE]

    def holding(self, task: Task) -> Worker | None:
        """The worker ``task`` was sent to and has not answered for."""
        for worker in self.all:
            if task in worker.inflight:
                return worker
        return None

    def count(self, *states: WorkerState) -> int:
        return sum(1 for w in self.all if w.state in states)
