"""Races a user runs into: an end racing a cancel or a timeout, callbacks and results that
misbehave, a thread that will not stop, pools dropped in a hurry.

Each test names what went wrong before the engine was rebuilt; each checks
what the user sees: the right outcome for every task, and a pool that goes on.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import makeparallel as mp
from polling import alive, wait_until
from processes import worker_pids

DEADLINE = 30.0
STARTS = [
    "spawn",
    pytest.param("fork", marks=pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")),
]


def inc(value: int) -> int:
    return value + 1


@pytest.mark.parametrize("start", STARTS)
def test_a_cancel_racing_the_end_of_a_task_never_harms_another_task(start: str) -> None:
    # A cancel checked which task a worker ran, then killed the worker; if the answer
    # had come meanwhile, the worker's next task died instead, as a "crash".
    rounds = 300 if start == "fork" else 60  # most cancels kill a worker: a fresh one is slower
    with mp.Pool(workers=2, start=start) as pool:
        for i in range(rounds):
            cancelled = pool.submit(inc, i)
            other = pool.submit(inc, -i)
            cancelled.cancel()
            assert other.result(timeout=DEADLINE) == 1 - i
            assert cancelled.cancelled() or cancelled.result(timeout=DEADLINE) == i + 1
        assert pool.health().crashes_last_minute == 0


@pytest.mark.parametrize("start", STARTS)
def test_tiny_timeouts_end_each_task_once_and_blame_no_other(start: str) -> None:
    with mp.Pool(workers=2, start=start) as pool:
        bounded = mp.parallel(inc).options(pool=pool, timeout=0.005)
        handles = [bounded(i) for i in range(1000 if start == "fork" else 300)]
        for i, handle in enumerate(handles):
            error = handle.exception(timeout=DEADLINE)
            if error is None:
                assert handle.result() == i + 1
            else:
                assert isinstance(error, mp.TaskTimeoutError), error
        assert pool.health().crashes_last_minute == 0


class ExitsWhenLoaded:
    """A value whose unpickling calls sys.exit (its __reduce__ says so)."""

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (sys.exit, (3,))


class ExitingError(Exception):
    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (sys.exit, (4,))


def make_exiting_value() -> ExitsWhenLoaded:
    return ExitsWhenLoaded()


def raise_exiting_error() -> None:
    raise ExitingError("raised")


def maybe_exiting(i: int) -> object:
    return ExitsWhenLoaded() if i == 7 else i


def test_a_result_that_exits_when_unpickled_fails_its_task_not_the_pool() -> None:
    # SystemExit from unpickling a result used to end the pool's I/O thread: the
    # handle stayed running for ever and shutdown() hung.
    with mp.Pool(workers=2, backend="process") as pool:
        with pytest.raises(mp.SerializationError, match="could not be unpickled"):
            pool.submit(make_exiting_value).result(timeout=DEADLINE)
        with pytest.raises(mp.TaskError, match="could not be sent back"):
            pool.submit(raise_exiting_error).result(timeout=DEADLINE)
        outcomes = pool.map(maybe_exiting, range(10), chunksize=5)
        assert [next(outcomes) for _ in range(7)] == list(range(7))
        with pytest.raises(mp.SerializationError):
            next(outcomes)
        assert pool.submit(inc, 1).result(timeout=DEADLINE) == 2
        assert pool.health().healthy


def exit_now(*_: object) -> None:
    sys.exit(1)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_callback_that_raises_systemexit_harms_no_pool(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # It used to end the pool's thread that ran it: worker threads died silently
    # (health() still said healthy), and a process pool lost its I/O thread.
    with mp.Pool(workers=2, backend=backend) as pool:
        handles = [pool.submit(inc, i).on_complete(exit_now) for i in range(10)]
        for handle in handles:
            handle.add_done_callback(exit_now)
        assert [h.result(timeout=DEADLINE) for h in handles] == list(range(1, 11))
        assert [pool.submit(inc, i).result(timeout=DEADLINE) for i in range(20)] == list(
            range(1, 21)
        )
        assert pool.health().healthy
    assert "SystemExit" in caplog.text


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def ignore_the_timeout(release: threading.Event) -> str:
    release.wait(DEADLINE)  # never looks at current_task().cancelled()
    return "late"


def test_a_thread_stuck_past_its_timeout_is_replaced_and_reported(
    release: threading.Event,
) -> None:
    # The stuck thread kept its place: the next task waited behind it, health() said
    # healthy, and the program's exit waited for a task that had already timed out.
    with mp.Pool(workers=1, backend="thread") as pool:
        stuck = mp.parallel(ignore_the_timeout).options(pool=pool, timeout=0.2)(release)
        with pytest.raises(mp.TaskTimeoutError):
            stuck.result(timeout=DEADLINE)
        assert pool.submit(inc, 1).result(timeout=DEADLINE) == 2  # a new thread took its place
        report = pool.health()
        assert report.workers_stuck == 1
        assert not report.healthy
        assert any("timed out or was cancelled" in reason for reason in report.reasons)
        release.set()
        wait_until(lambda: pool.health().workers_stuck == 0, what="the stuck thread to leave")
        assert pool.health().healthy
        assert stuck.state == "timed_out"  # its late result is dropped


def test_shutdown_does_not_wait_for_a_stuck_thread(release: threading.Event) -> None:
    pool = mp.Pool(workers=1, backend="thread")
    stuck = mp.parallel(ignore_the_timeout).options(pool=pool, timeout=0.2)(release)
    with pytest.raises(mp.TaskTimeoutError):
        stuck.result(timeout=DEADLINE)
    summary = pool.shutdown(wait=True)  # returns although the thread still runs
    assert summary.stopped == 0
    assert not release.is_set()


def pool_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(name)]


@pytest.mark.parametrize(
    ("backend", "start"), [("process", "spawn"), ("process", "fork"), ("thread", "spawn")]
)
def test_pools_dropped_without_shutdown_go_at_once_without_the_collector(
    backend: str, start: str
) -> None:
    # With start="fork", 50 dropped pools kept their threads and processes until a
    # later collection: each pool was in a reference cycle.
    name = f"dropped-{backend}-{start}"
    pids: list[int] = []
    gc.disable()
    try:
        for i in range(50):
            pool = mp.Pool(workers=2, backend=backend, start=start, name=f"{name}-{i}")
            assert pool.submit(inc, i).result(timeout=DEADLINE) == i + 1
            pids += worker_pids(pool)
            del pool
        wait_until(
            lambda: not pool_threads(name) and not any(alive(pid) for pid in pids),
            what="the dropped pools' threads and processes to go",
        )
    finally:
        gc.enable()


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_callback_raising_systemexit_on_a_timed_out_task_leaves_timeouts_working(
    backend: str,
) -> None:
    # The on_error callback of a timed-out task runs on the pool's timer thread; its
    # SystemExit used to end that thread, and no timeout fired after it.
    with mp.Pool(workers=1, backend=backend) as pool:
        bounded = mp.parallel(nap).options(pool=pool, timeout=0.05)
        first = bounded(1.0).on_error(exit_now)
        assert isinstance(first.exception(timeout=DEADLINE), mp.TaskTimeoutError)
        second = bounded(1.0)
        assert isinstance(second.exception(timeout=DEADLINE), mp.TaskTimeoutError)
