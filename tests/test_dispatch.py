"""Which task goes to which worker, without processes: plain records, a fake sink, socket pairs.

The decisions (``dispatch``) are pure functions; the hand-out loop
(``Exchange.hand_out``) is driven here through its declared seams - the
pool's ``Sink`` and the I/O thread's ``IOThread`` - with workers whose
"process" is one end of a socket pair, so a dead worker is a closed socket.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterator

import pytest

import makeparallel as mp
from fakes import FakeIO, FakeProcess, FakeSink
from makeparallel._task import Task
from makeparallel.backends.base import WorkerSetup
from makeparallel.backends.process.codec import Encoder
from makeparallel.backends.process.dispatch import (
    MAX_AHEAD,
    Pace,
    choose,
    room,
    take_batch,
)
from makeparallel.backends.process.exchange import Exchange
from makeparallel.backends.process.memory import MemoryGuard
from makeparallel.backends.process.workers import (
    InvalidWorkerMove,
    Worker,
    WorkerState,
    move,
)


def noop() -> None:
    return None


def task(timeout: float | None = None) -> Task:
    made = Task(noop, (), {}, mp.Handle(), timeout=timeout)
    Encoder().prepare(made)
    return made


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def worker(sockets: list[socket.socket], state: WorkerState, index: int = 0) -> Worker:
    """A worker record whose far end is ``sockets[-1]`` (close it and the worker is dead)."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    sockets += [ours, theirs]
    made = Worker(index, FakeProcess(1000 + index), ours)  # type: ignore[arg-type]
    made.booted = state is not WorkerState.STARTING
    if state is not WorkerState.STARTING:
        move(made, state)
    return made


def exchange(sink: FakeSink, workers: list[Worker], io: FakeIO | None = None) -> Exchange:
    ex = Exchange(
        sink, WorkerSetup(), len(workers), MemoryGuard(None, False, False), io or FakeIO()
    )
    for w in workers:
        ex.table.add(w)
        if w.state is WorkerState.IDLE:
            ex.table.idle.append(w)
    return ex


# -- Pace -----------------------------------------------------------------------------


def test_short_tasks_are_sent_ahead_a_few_milliseconds_worth() -> None:
    pace = Pace()
    assert pace.ahead == 1  # nothing measured: one at a time
    for _ in range(50):
        pace.observe(0.0001)
    assert pace.ahead == 50  # 5 ms of 0.1 ms tasks
    assert pace.quick
    for _ in range(50):
        pace.observe(0.000001)
    assert pace.ahead == MAX_AHEAD


def test_one_slow_task_raises_the_estimate_tenfold_at_most() -> None:
    pace = Pace()
    for _ in range(50):
        pace.observe(0.0001)
    pace.observe(10.0)
    assert pace.mean is not None
    assert pace.mean < 0.0001 * 3  # 0.2 of a sample capped at ten times the mean
    assert pace.ahead > 1
    assert not pace.last_quick


def test_a_run_of_slow_tasks_stops_the_sending_ahead() -> None:
    pace = Pace()
    for _ in range(50):
        pace.observe(0.000005)
    for _ in range(12):
        pace.observe(0.02)
    assert pace.ahead == 1
    assert not pace.quick


# -- choose, room, take_batch ------------------------------------------------------------


def test_an_idle_worker_is_chosen_first(sockets: list[socket.socket]) -> None:
    busy, idle = worker(sockets, WorkerState.BUSY), worker(sockets, WorkerState.IDLE, 1)
    busy.inflight.append(task())
    chosen = choose([busy, idle], [idle], ahead=10, presend=True, from_io=True)
    assert chosen is idle


def test_a_starting_worker_holds_one_task_only_without_an_initializer(
    sockets: list[socket.socket],
) -> None:
    starting = worker(sockets, WorkerState.STARTING)
    assert choose([starting], [], ahead=1, presend=True, from_io=False) is starting
    assert choose([starting], [], ahead=1, presend=False, from_io=False) is None
    starting.inflight.append(task())
    assert choose([starting], [], ahead=10, presend=True, from_io=True) is None


def test_only_the_io_thread_fills_busy_workers_least_busy_first(
    sockets: list[socket.socket],
) -> None:
    a, b = worker(sockets, WorkerState.BUSY), worker(sockets, WorkerState.BUSY, 1)
    a.inflight.extend([task(), task()])
    b.inflight.append(task())
    assert choose([a, b], [], ahead=4, presend=True, from_io=False) is None
    assert choose([a, b], [], ahead=4, presend=True, from_io=True) is b
    assert choose([a, b], [], ahead=1, presend=True, from_io=True) is None  # long tasks
    b.sent = 5
    assert choose([a, b], [], ahead=4, presend=True, from_io=True, max_tasks=5) is a


def test_a_write_carries_a_fair_share_of_what_waits(sockets: list[socket.socket]) -> None:
    idle = worker(sockets, WorkerState.IDLE)
    fair = room(
        idle, ahead=64, allowance=64, one_at_a_time=False, waiting=lambda: 10, ready=lambda: 2
    )
    assert fair == 6  # 1 + ceil(9 / 2)
    assert (
        room(idle, ahead=64, allowance=3, one_at_a_time=False, waiting=lambda: 10, ready=lambda: 2)
        == 3
    )
    assert (
        room(idle, ahead=64, allowance=64, one_at_a_time=True, waiting=lambda: 10, ready=lambda: 2)
        == 1
    )
    assert (
        room(idle, ahead=64, allowance=64, one_at_a_time=False, waiting=lambda: 1, ready=lambda: 2)
        == 1
    )
    starting = worker(sockets, WorkerState.STARTING)
    assert (
        room(
            starting,
            ahead=64,
            allowance=64,
            one_at_a_time=False,
            waiting=lambda: 9,
            ready=lambda: 1,
        )
        == 1
    )


def test_a_timed_task_never_waits_behind_another() -> None:
    timed, plain = task(timeout=5.0), task()
    backlog: deque[Task] = deque([plain, timed])
    sink = FakeSink([task(timeout=1.0)])
    # to a busy worker: nothing timed, the batch ends before the timed task
    assert take_batch(backlog, sink, 5, first_may_be_timed=False) == [plain]
    assert list(backlog) == [timed]
    # to an idle worker: a timed task first, nothing behind it that is timed
    assert take_batch(backlog, sink, 5, first_may_be_timed=True) == [timed]
    assert len(sink.queue) == 1


# -- the hand-out loop, and the states it moves workers through ---------------------------


def test_a_send_to_a_dead_worker_marks_it_gone_and_loses_no_task(
    sockets: list[socket.socket],
) -> None:
    # The livelock this rules out: a send to a worker that died (its death not yet
    # read) put the tasks back, and the next turn picked the same worker, for ever.
    dead, alive = worker(sockets, WorkerState.IDLE), worker(sockets, WorkerState.IDLE, 1)
    sockets[1].close()  # dead's far end: its process has ended
    tasks = [task() for _ in range(20)]
    sink = FakeSink(tasks)
    ex = exchange(sink, [alive, dead])
    ex.hand_out()
    assert dead.state is WorkerState.GONE
    assert dead not in ex.table.idle
    assert alive.state is WorkerState.BUSY
    held = list(alive.inflight) + list(ex.table.backlog) + list(sink.queue) + list(dead.inflight)
    assert sorted(t.id for t in held) == sorted(t.id for t in tasks)  # every task somewhere


def test_the_hand_out_ends_when_every_worker_is_dead(sockets: list[socket.socket]) -> None:
    workers = [worker(sockets, WorkerState.IDLE, i) for i in range(3)]
    for far_end in sockets[1::2]:
        far_end.close()
    sink = FakeSink([task() for _ in range(5)])
    ex = exchange(sink, workers)
    ex.hand_out()  # returns: each turn sent something or took a worker out for good
    assert all(w.state is WorkerState.GONE for w in workers)
    assert len(ex.table.backlog) + len(sink.queue) == 5


def test_a_worker_cannot_make_a_move_its_life_does_not_allow(
    sockets: list[socket.socket],
) -> None:
    gone = worker(sockets, WorkerState.IDLE)
    move(gone, WorkerState.GONE)
    with pytest.raises(InvalidWorkerMove, match="from gone to busy"):
        move(gone, WorkerState.BUSY)
    retiring = worker(sockets, WorkerState.IDLE, 1)
    move(retiring, WorkerState.RETIRING)
    with pytest.raises(InvalidWorkerMove):
        move(retiring, WorkerState.IDLE)


def test_an_answer_frees_the_worker_and_the_next_task_goes_out(
    sockets: list[socket.socket],
) -> None:
    busy = worker(sockets, WorkerState.IDLE)
    first, second = task(), task()
    sink = FakeSink([first])
    ex = exchange(sink, [busy])
    ex.hand_out()
    assert list(busy.inflight) == [first]
    sink.queue.append(second)
    assert ex.take_answer(busy, first.id) is first
    assert busy.state is WorkerState.IDLE
    ex.hand_out()
    assert list(busy.inflight) == [second]
    assert busy.state is WorkerState.BUSY


def test_stopping_a_task_queued_behind_another_asks_the_worker_to_skip_it(
    sockets: list[socket.socket],
) -> None:
    busy = worker(sockets, WorkerState.BUSY)
    running, waiting = task(), task()
    busy.inflight.extend([running, waiting])
    ex = exchange(FakeSink([]), [busy])
    assert ex.stop_task(waiting, mp.TaskCancelledError("cancelled")) is None
    assert busy.state is WorkerState.BUSY  # the running task goes on
    stop = ex.stop_task(running, mp.TaskCancelledError("cancelled"))
    assert stop == (busy, running, False)  # not alone: the I/O thread checks before it kills
    assert busy.state is WorkerState.STOPPING
