"""Short tasks are sent ahead to busy workers; nothing about a task may change because of it.

Once tasks prove short, the process engine queues a few of them behind a
worker's running task. These tests fill that queue on purpose (one worker,
many no-op tasks first, then a task that blocks) and check what a user
would notice: a cancelled task waiting there never runs, a crash fails only
the task that was running, a task with a timeout is never queued behind
another, and every task ends exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import makeparallel as mp
from polling import wait_for_file, wait_until
from processes import worker_pids

DEADLINE = 30.0


def noop() -> None:
    return None


def block_then_return(path: str, value: int) -> int:
    wait_for_file(path)
    return value


def touch(path: str) -> str:
    Path(path).touch()
    return path


def queued_on_the_worker(pool: mp.Pool) -> int:
    """How many tasks wait behind the running one on the pool's one worker."""
    (worker,) = pool.workers_info()
    return int(worker["queued"])


@pytest.fixture
def pool():
    with mp.Pool(workers=1, backend="process", name="ahead") as p:
        for handle in [p.submit(noop) for _ in range(200)]:
            handle.result(timeout=DEADLINE)  # no-op tasks prove short: they are sent ahead
        yield p


def queue_behind(pool: mp.Pool, tmp_path: Path, first: mp.Handle[int], count: int):
    """Queue ``count`` tasks behind ``first`` on the pool's one worker.

    Work is sent ahead when a worker answers: a gate task holds the worker
    while ``first`` and the others are submitted, then its answer makes the
    pool send them all in one write.
    """
    queued = [pool.submit(touch, str(tmp_path / f"ran-{i}")) for i in range(count)]
    Path(tmp_path / "gate").touch()
    wait_until(lambda: queued_on_the_worker(pool) == count, what="tasks queued on the worker")
    wait_until(first.running, what="the first task to start")
    return queued


def queue_behind_a_blocked_task(pool: mp.Pool, tmp_path: Path, count: int):
    gate = pool.submit(block_then_return, str(tmp_path / "gate"), 0)
    wait_until(gate.running, what="the gate task to start")
    release = str(tmp_path / "release")
    blocked = pool.submit(block_then_return, release, 1)
    queued = queue_behind(pool, tmp_path, blocked, count)
    assert gate.result(timeout=DEADLINE) == 0
    return release, blocked, queued


def test_tasks_sent_ahead_count_as_running(pool: mp.Pool, tmp_path: Path) -> None:
    release, blocked, queued = queue_behind_a_blocked_task(pool, tmp_path, 3)
    assert all(h.state == "running" for h in queued)
    # a busy worker's queue is filled when it answers, not at submit: this one waits in the pool
    waiting = pool.submit(touch, str(tmp_path / "later"))
    assert waiting.state == "pending"
    Path(release).touch()
    assert blocked.result(timeout=DEADLINE) == 1
    assert [h.result(timeout=DEADLINE) for h in queued] == [
        str(tmp_path / f"ran-{i}") for i in range(3)
    ]
    assert waiting.result(timeout=DEADLINE) == str(tmp_path / "later")


def test_a_cancelled_task_waiting_in_a_worker_never_runs(pool: mp.Pool, tmp_path: Path) -> None:
    release, blocked, queued = queue_behind_a_blocked_task(pool, tmp_path, 4)
    assert queued[1].cancel() is True
    assert queued[2].cancel() is True
    Path(release).touch()
    assert blocked.result(timeout=DEADLINE) == 1
    assert queued[0].result(timeout=DEADLINE) == str(tmp_path / "ran-0")
    assert queued[3].result(timeout=DEADLINE) == str(tmp_path / "ran-3")
    for handle in queued[1:3]:
        assert handle.cancelled()
        with pytest.raises(mp.TaskCancelledError):
            handle.result(timeout=0)
    assert not (tmp_path / "ran-1").exists()
    assert not (tmp_path / "ran-2").exists()
    # the worker was not replaced for it, and answers the next task
    pid = worker_pids(pool)
    assert pool.submit(touch, str(tmp_path / "after")).result(timeout=DEADLINE)
    assert worker_pids(pool) == pid


def test_a_crash_fails_only_the_running_task_and_requeues_the_rest(
    pool: mp.Pool, tmp_path: Path
) -> None:
    _, blocked, queued = queue_behind_a_blocked_task(pool, tmp_path, 5)
    assert blocked.worker is not None
    os.kill(int(blocked.worker.split()[1]), signal.SIGKILL)
    with pytest.raises(mp.WorkerCrashedError, match="SIGKILL"):
        blocked.result(timeout=DEADLINE)
    assert [h.result(timeout=DEADLINE) for h in queued] == [
        str(tmp_path / f"ran-{i}") for i in range(5)
    ]
    assert all(h.state == "succeeded" for h in queued)


def test_a_timeout_stops_only_its_task_and_frees_the_ones_behind(
    pool: mp.Pool, tmp_path: Path
) -> None:
    gate = pool.submit(block_then_return, str(tmp_path / "gate"), 0)
    wait_until(gate.running, what="the gate task to start")
    hung = pool.submit(block_then_return, str(tmp_path / "never"), 1)
    queued = queue_behind(pool, tmp_path, hung, 3)
    # a task with a timeout waits in the pool until a worker is idle ...
    timed_out = mp.parallel(timeout=0.3, pool=pool)(block_then_return)
    late = timed_out(str(tmp_path / "never"), 3)
    assert late.state == "pending"
    assert queued_on_the_worker(pool) == 3
    # ... so when the hung task is stopped, the queued tasks run, then the timed one times out
    assert hung.cancel() is True
    assert [h.result(timeout=DEADLINE) for h in queued] == [
        str(tmp_path / f"ran-{i}") for i in range(3)
    ]
    with pytest.raises(mp.TaskTimeoutError):
        late.result(timeout=DEADLINE)


def busy(seconds: float) -> float:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return seconds


def test_long_tasks_stop_being_sent_ahead(pool: mp.Pool, tmp_path: Path) -> None:
    # One long answer raises the estimate tenfold at most (the outlier cap), so after
    # no-ops of a few microseconds it takes several 20 ms tasks to stop sending ahead.
    for _ in range(12):
        pool.submit(busy, 0.02).result(timeout=DEADLINE)
    # When the running task answers, the pool hands out what waits: one at a time now.
    running = pool.submit(busy, 0.05)
    gate = pool.submit(block_then_return, str(tmp_path / "gate"), 0)
    waiting = [pool.submit(touch, str(tmp_path / f"ran-{i}")) for i in range(3)]
    wait_until(lambda: running.done() and gate.running(), what="the gate task to be sent")
    assert queued_on_the_worker(pool) == 0
    assert all(h.state == "pending" for h in waiting)
    Path(tmp_path / "gate").touch()
    assert [h.result(timeout=DEADLINE) for h in waiting] == [
        str(tmp_path / f"ran-{i}") for i in range(3)
    ]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def echo(value: int) -> int:
    return value


def test_a_pool_at_rest_after_quick_round_trips_uses_no_cpu() -> None:
    # Workers and waiting callers poll for a moment before they sleep while answers
    # come fast; once nothing comes, nothing may keep polling.
    with mp.Pool(workers=2, backend="process") as pool:
        for i in range(300):
            assert pool.submit(echo, i).result(timeout=DEADLINE) == i
        pids = [os.getpid(), *worker_pids(pool)]
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(0.5)  # the stretch at rest that is measured
        used = [cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
    assert max(used) < 0.05, f"CPU seconds used at rest (parent, workers): {used}"
