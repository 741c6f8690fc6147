"""Timeouts, cancellation, progress, context, retries and circuit breakers."""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import makeparallel as mp
from polling import wait_for_file, wait_until
from processes import worker_pids

DEADLINE = 30.0


# -- functions the workers run ---------------------------------------------------


def hang_forever() -> None:
    while True:
        time.sleep(0.01)


def wait_then(path: str, value: int) -> int:
    wait_for_file(path)
    return value


def square(x: int) -> int:
    return x * x


def progress_then_wait(path: str) -> str:
    mp.report_progress(5, 10, message="half way")
    wait_for_file(path)
    mp.report_progress(1.0, message="done")
    return "finished"


def many_progress_updates(n: int) -> int:
    for i in range(n):
        mp.report_progress(i + 1, n)
    return n


def bad_progress(value: float) -> None:
    mp.report_progress(value)


def describe_context() -> dict[str, object]:
    ctx = mp.current_task()
    assert ctx is not None
    return {
        "task_id": ctx.task_id,
        "name": ctx.name,
        "metadata": dict(ctx.metadata),
        "attempt": ctx.attempt,
        "worker": ctx.worker,
        "cancelled": ctx.cancelled(),
        "pid": os.getpid(),
    }


def flaky(counter: str, failures: int) -> int:
    """Fail ``failures`` times (counted in a file, so it works across processes), then succeed."""
    with open(counter, "a") as f:
        f.write("x")
    attempts = len(Path(counter).read_text())
    if attempts <= failures:
        raise ConnectionError(f"flaky failure {attempts}")
    return attempts


def crash_once(counter: str) -> str:
    with open(counter, "a") as f:
        f.write("x")
    if len(Path(counter).read_text()) == 1:
        os._exit(9)
    return "survived"


def hang_and_count(counter: str) -> None:
    with open(counter, "a") as f:
        f.write("x")
    hang_forever()


def fail_or_succeed(counter: str, fail: bool) -> str:
    with open(counter, "a") as f:
        f.write("x")
    if fail:
        raise RuntimeError("downstream is down")
    return "ok"


@pytest.fixture
def pool() -> Iterator[mp.Pool]:
    with mp.Pool(workers=2, backend="process", name="lifecycle") as p:
        yield p


# -- timeouts -----------------------------------------------------------------------


def test_a_hung_task_is_stopped_by_its_timeout_while_others_finish(
    tmp_path: Path,
) -> None:
    release = str(tmp_path / "go")
    with mp.Pool(workers=4, backend="process") as pool:
        hung = mp.parallel(hang_forever).options(timeout=0.5, pool=pool)()
        others = [pool.submit(wait_then, release, i) for i in range(3)]
        wait_until(lambda: all(h.running() for h in [hung, *others]), what="all four to start")
        before = set(worker_pids(pool))
        with pytest.raises(mp.TaskTimeoutError) as info:
            hung.result(timeout=DEADLINE)
        error = info.value
        assert isinstance(error, TimeoutError)
        assert isinstance(error, mp.TaskError)
        assert hung.state == "timed_out"
        assert hung.elapsed is not None
        assert hung.elapsed >= 0.5
        assert "timed out after 0.5 s" in str(error)
        assert error.worker_pid in before
        Path(release).touch()
        assert [h.result(timeout=DEADLINE) for h in others] == [0, 1, 2]
        wait_until(
            lambda: error.worker_pid not in worker_pids(pool) and len(worker_pids(pool)) == 4,
            what="the replacement worker",
        )
        assert pool.submit(square, 6).result(timeout=DEADLINE) == 36


def test_time_waiting_in_the_queue_does_not_count(tmp_path: Path) -> None:
    release = str(tmp_path / "go")
    with mp.Pool(workers=1, backend="process") as pool:
        first = pool.submit(wait_then, release, 1)
        quick = mp.parallel(square).options(timeout=0.3, pool=pool)(5)
        queued_at = time.monotonic()
        wait_until(lambda: time.monotonic() - queued_at > 0.6, what="the clock")
        assert quick.state == "pending"
        Path(release).touch()
        assert first.result(timeout=DEADLINE) == 1
        assert quick.result(timeout=DEADLINE) == 25


def test_thread_task_past_its_timeout_fails_and_is_told_to_stop() -> None:
    seen: list[bool] = []
    stop_seen = threading.Event()

    def cooperative() -> str:
        ctx = mp.current_task()
        assert ctx is not None
        while not ctx.cancelled():
            stop_seen.wait(0.01)
        seen.append(True)
        stop_seen.set()
        return "stopped early"

    with mp.Pool(workers=1, backend="thread") as pool:
        handle = mp.parallel(cooperative).options(timeout=0.2, pool=pool)()
        with pytest.raises(mp.TaskTimeoutError, match="thread cannot be killed"):
            handle.result(timeout=DEADLINE)
        assert stop_seen.wait(DEADLINE)
        assert seen == [True]
        assert handle.state == "timed_out"
        assert pool.submit(square, 3).result(timeout=DEADLINE) == 9


def test_parallel_map_timeout_is_per_item() -> None:
    with mp.Pool(workers=2, backend="process") as pool:
        items = [1, 2, -1, 3]
        results = mp.parallel_map(
            mp.parallel(map_item).options(pool=pool), items, timeout=1.0, on_error="return"
        )
    assert results[:2] == [1, 4]
    assert isinstance(results[2], mp.TaskTimeoutError)
    assert results[3] == 9


def map_item(x: int) -> int:
    if x < 0:
        hang_forever()
    return x * x


# -- cancellation -------------------------------------------------------------------


def test_cancelling_a_running_process_task_frees_its_worker(tmp_path: Path) -> None:
    with mp.Pool(workers=1, backend="process") as pool:
        running = pool.submit(hang_forever)
        queued = pool.submit(square, 7)
        wait_until(running.running, what="the task to start")
        assert queued.state == "pending"
        assert running.cancel() is True
        assert running.cancelled()
        assert running.state == "cancelled"
        with pytest.raises(mp.TaskCancelledError) as info:
            running.result(timeout=DEADLINE)
        assert isinstance(info.value, concurrent.futures.CancelledError)
        assert queued.result(timeout=DEADLINE) == 49  # the freed worker took the next task


def test_cancelling_a_running_thread_task_sets_its_flag() -> None:
    started = threading.Event()
    finished = threading.Event()

    def cooperative() -> None:
        started.set()
        ctx = mp.current_task()
        assert ctx is not None
        while not ctx.cancelled():
            finished.wait(0.01)
        finished.set()

    with mp.Pool(workers=1, backend="thread") as pool:
        handle = pool.submit(cooperative)
        assert started.wait(DEADLINE)
        assert handle.cancel() is True
        assert handle.cancelled()
        assert finished.wait(DEADLINE), "the task never saw current_task().cancelled()"
        with pytest.raises(mp.TaskCancelledError):
            handle.result(timeout=DEADLINE)


def test_awaiting_a_cancelled_handle_raises_cancelled() -> None:
    import asyncio

    async def main(handle: mp.Handle[None]) -> None:
        await handle

    with mp.Pool(workers=1, backend="process") as pool:
        handle = pool.submit(hang_forever)
        wait_until(handle.running, what="the task to start")
        handle.cancel()
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(main(handle))


# -- progress -----------------------------------------------------------------------


def test_progress_is_seen_while_the_task_runs(pool: mp.Pool, tmp_path: Path) -> None:
    release = str(tmp_path / "go")
    updates: list[float] = []
    half = threading.Event()

    def on_progress(value: float) -> None:
        updates.append(value)
        if value == 0.5:
            half.set()

    handle = pool.submit(progress_then_wait, release).on_progress(on_progress)
    assert half.wait(DEADLINE), "no progress arrived while the task ran"
    assert not handle.done()
    assert handle.progress == 0.5
    assert handle.progress_message == "half way"
    late: list[float] = []
    handle.on_progress(late.append)  # registered late: fires at once with the latest value
    assert late == [0.5]
    Path(release).touch()
    assert handle.result(timeout=DEADLINE) == "finished"
    assert handle.progress == 1.0
    assert handle.progress_message == "done"
    assert updates[-1] == 1.0


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_the_last_of_many_progress_updates_always_arrives(backend: str) -> None:
    with mp.Pool(workers=1, backend=backend) as pool:
        handle = pool.submit(many_progress_updates, 100_000)
        assert handle.result(timeout=DEADLINE) == 100_000
        assert handle.progress == 1.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1.5, -0.1])
def test_bad_progress_values_raise_value_error_in_the_task(pool: mp.Pool, value: float) -> None:
    with pytest.raises(ValueError, match="report_progress"):
        pool.submit(bad_progress, value).result(timeout=DEADLINE)


def test_report_progress_checks_its_arguments_and_context() -> None:
    with pytest.raises(ValueError, match="outside a task"):
        mp.report_progress(0.5)
    with pytest.raises(TypeError):
        mp.report_progress("half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total"):
        mp.report_progress(1, 0)
    with pytest.raises(ValueError, match="done"):
        mp.report_progress(11, 10)


# -- context and metadata ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_current_task_describes_the_running_task(backend: str) -> None:
    with mp.Pool(workers=1, backend=backend) as pool:
        fn = mp.parallel(describe_context).options(
            pool=pool, name="ctx-check", metadata={"user": "u1"}
        )
        handle = fn()
        info = handle.result(timeout=DEADLINE)
    assert info["task_id"] == handle.task_id
    assert info["name"] == "ctx-check" == handle.name
    assert info["metadata"] == {"user": "u1"}
    assert info["attempt"] == 1
    assert info["cancelled"] is False
    assert info["worker"] == handle.worker
    if backend == "process":
        assert info["worker"] == f"pid {info['pid']}"
        assert info["pid"] != os.getpid()


def test_current_task_is_none_outside_a_task() -> None:
    assert mp.current_task() is None


# -- retries ----------------------------------------------------------------------


def test_a_flaky_task_succeeds_on_its_third_attempt(
    pool: mp.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counter = str(tmp_path / "attempts")
    fn = mp.parallel(flaky).options(pool=pool, retry=mp.Retry(attempts=3, backoff=mp.Fixed(0.01)))
    with caplog.at_level(logging.WARNING, logger="makeparallel"):
        handle = fn(counter, 2)
        assert handle.result(timeout=DEADLINE) == 3
    assert handle.attempts == 3
    assert handle.state == "succeeded"
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert "ConnectionError" in retries[0].getMessage()


def test_retries_give_up_after_the_last_attempt(pool: mp.Pool, tmp_path: Path) -> None:
    counter = str(tmp_path / "attempts")
    fn = mp.parallel(flaky).options(pool=pool, retry=mp.Retry(attempts=2, backoff=0))
    handle = fn(counter, 5)
    with pytest.raises(ConnectionError, match="flaky failure 2"):
        handle.result(timeout=DEADLINE)
    assert handle.attempts == 2
    assert len(Path(counter).read_text()) == 2


def test_retry_skips_exceptions_it_was_not_told_about(pool: mp.Pool, tmp_path: Path) -> None:
    counter = str(tmp_path / "attempts")
    policy = mp.Retry(attempts=3, backoff=0, retry_on=(TimeoutError,))
    with pytest.raises(ConnectionError):
        mp.parallel(flaky).options(pool=pool, retry=policy)(counter, 5).result(DEADLINE)
    assert len(Path(counter).read_text()) == 1
    policy = mp.Retry(attempts=3, backoff=0, give_up_on=(ConnectionError,))
    counter2 = str(tmp_path / "attempts2")
    with pytest.raises(ConnectionError):
        mp.parallel(flaky).options(pool=pool, retry=policy)(counter2, 5).result(DEADLINE)
    assert len(Path(counter2).read_text()) == 1


def test_timeouts_are_retried_only_when_the_policy_says_so(tmp_path: Path) -> None:
    # (an attempt on a worker new to this test module first imports it - pytest with it -
    # inside the task's time: the timeouts leave room for that)
    with mp.Pool(workers=2, backend="process") as pool:
        plain = str(tmp_path / "plain")
        fn = mp.parallel(hang_and_count).options(
            pool=pool, timeout=1.0, retry=mp.Retry(attempts=3, backoff=0)
        )
        with pytest.raises(mp.TaskTimeoutError):
            fn(plain).result(timeout=DEADLINE)
        assert len(Path(plain).read_text()) == 1

        listed = str(tmp_path / "listed")
        policy = mp.Retry(attempts=3, backoff=0, retry_on=(mp.TaskTimeoutError,))
        handle = mp.parallel(hang_and_count).options(pool=pool, timeout=1.0, retry=policy)(listed)
        with pytest.raises(mp.TaskTimeoutError, match="attempt 3"):
            handle.result(timeout=DEADLINE)
        assert handle.attempts == 3
        assert len(Path(listed).read_text()) == 3


def test_a_crash_is_retried_when_the_policy_lists_it(pool: mp.Pool, tmp_path: Path) -> None:
    counter = str(tmp_path / "attempts")
    policy = mp.Retry(attempts=2, backoff=0, retry_on=(mp.WorkerCrashedError,))
    handle = mp.parallel(crash_once).options(pool=pool, retry=policy)(counter)
    assert handle.result(timeout=DEADLINE) == "survived"
    assert handle.attempts == 2


def test_cancel_during_the_retry_wait(pool: mp.Pool, tmp_path: Path) -> None:
    counter = str(tmp_path / "attempts")
    policy = mp.Retry(attempts=3, backoff=mp.Fixed(30))
    handle = mp.parallel(flaky).options(pool=pool, retry=policy)(counter, 5)
    wait_until(lambda: handle.attempts == 1 and handle.state == "pending", what="the retry wait")
    assert handle.cancel() is True
    with pytest.raises(mp.TaskCancelledError):
        handle.result(timeout=DEADLINE)
    assert len(Path(counter).read_text()) == 1


def test_backoff_values_compose() -> None:
    assert mp.Fixed(0.5)(1) == 0.5
    exp = mp.Exponential(initial=0.1, factor=2, maximum=1)
    assert [exp(n) for n in (1, 2, 3, 4, 5)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    assert (mp.Fixed(1) + exp)(2) == pytest.approx(1.2)
    policy = mp.Retry(attempts=5, backoff=exp, jitter=0.5)
    for attempt in range(1, 5):
        assert exp(attempt) <= policy.delay(attempt) <= exp(attempt) * 1.5


# -- circuit breakers -----------------------------------------------------------------


def test_breaker_opens_after_failures_and_half_opens_later(pool: mp.Pool, tmp_path: Path) -> None:
    transitions: list[tuple[str, str]] = []
    breaker = mp.CircuitBreaker(
        failure_threshold=3,
        reset_timeout=0.3,
        name="downstream",
        on_state_change=lambda old, new: transitions.append((old, new)),
    )
    counter = str(tmp_path / "calls")
    call = mp.parallel(fail_or_succeed).options(pool=pool, circuit_breaker=breaker)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            call(counter, True).result(timeout=DEADLINE)
    assert breaker.state == "open"
    refused = call(counter, False)
    assert refused.done()
    with pytest.raises(mp.CircuitOpenError, match="downstream"):
        refused.result(timeout=0)
    assert len(Path(counter).read_text()) == 3  # the refused call never ran

    wait_until(lambda: breaker.state == "half_open", what="the reset timeout")
    trial = call(counter, False)
    second = call(counter, False)  # only one trial goes through while half-open
    with pytest.raises(mp.CircuitOpenError):
        second.result(timeout=0)
    assert trial.result(timeout=DEADLINE) == "ok"
    assert breaker.state == "closed"
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_trial_opens_the_breaker_again(pool: mp.Pool, tmp_path: Path) -> None:
    breaker = mp.CircuitBreaker(failure_threshold=1, reset_timeout=0.2)
    counter = str(tmp_path / "calls")
    shared_a = mp.parallel(fail_or_succeed).options(pool=pool, circuit_breaker=breaker)
    shared_b = mp.parallel(flaky).options(pool=pool, circuit_breaker=breaker)
    with pytest.raises(RuntimeError):
        shared_a(counter, True).result(timeout=DEADLINE)
    assert breaker.state == "open"
    with pytest.raises(mp.CircuitOpenError):
        shared_b(str(tmp_path / "b"), 0).result(timeout=0)  # shared: the other function is refused
    wait_until(lambda: breaker.state == "half_open", what="the reset timeout")
    with pytest.raises(RuntimeError):
        shared_a(counter, True).result(timeout=DEADLINE)
    assert breaker.state == "open"


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf])
def test_bad_timeouts_are_value_errors(value: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        mp.parallel(timeout=value)(square)
    with pytest.raises(ValueError, match="timeout"):
        mp.parallel(square).options(timeout=value)


def test_timeout_must_be_a_number() -> None:
    with pytest.raises(TypeError, match="timeout"):
        mp.parallel(square).options(timeout="5")
    with pytest.raises(TypeError, match="timeout"):
        mp.parallel(square).options(timeout=True)


def test_bad_policies_explain_the_fix() -> None:
    with pytest.raises(ValueError, match="use attempts=1"):
        mp.Retry(attempts=0)
    with pytest.raises(TypeError):
        mp.Retry(attempts=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exception types"):
        mp.Retry(retry_on=("ConnectionError",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jitter"):
        mp.Retry(jitter=2)
    with pytest.raises(ValueError, match="failure_threshold must be >= 1"):
        mp.CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="reset_timeout"):
        mp.CircuitBreaker(reset_timeout=0)
    with pytest.raises(TypeError, match=r"retry must be a makeparallel\.Retry"):
        mp.parallel(square).options(retry=3)
    with pytest.raises(TypeError, match="on_progress needs a callable"):
        mp.Pool(backend="serial").submit(square, 1).on_progress("x")  # type: ignore[arg-type]


def test_task_error_reads_as_one_line(pool: mp.Pool, tmp_path: Path) -> None:
    handle = mp.parallel(hang_forever).options(pool=pool, timeout=0.2)()
    error = handle.exception(timeout=DEADLINE)
    assert isinstance(error, mp.TaskTimeoutError)
    assert "\n" not in str(error)
    assert error.task_id == handle.task_id
    assert error.task_name == handle.name
    assert error.function is not None
    assert error.function.endswith("hang_forever")
    assert error.attempt == 1
    assert error.args_repr == "()"
