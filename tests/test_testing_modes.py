"""makeparallel.testing: the serial and deterministic modes, the fake clock, rerun_inline,
debug mode and what doctor reports."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import weakref

import pytest
from tests.testing_tasks import (
    divide,
    echo,
    fail_until,
    nested_sum,
    raise_unpicklable,
    remote_where,
    returns_lock,
    where,
)

import makeparallel as mp

DEADLINE = 30.0


# -- serial ------------------------------------------------------------------------------


def test_serial_runs_parallel_calls_maps_and_pools_in_the_calling_thread() -> None:
    here = (os.getpid(), threading.current_thread().name)
    with mp.testing.serial():
        assert remote_where(1).result()[1:] == here
        assert [r[1:] for r in mp.parallel_map(where, [1, 2, 3])] == [here] * 3
        assert [r[1:] for r in mp.imap(where, [4, 5], ordered=False)] == [here] * 2
        with mp.Pool(workers=2, backend="process") as pool:
            assert pool.workers_info() == []  # no worker process started
            assert pool.submit(where, 6).result()[1:] == here
            assert [r[0] for r in pool.map(where, [7, 8])] == [7, 8]
        assert mp.gather([remote_where(9), remote_where(10)])[1][0] == 10


def test_serial_covers_a_pool_created_before_the_block() -> None:
    with mp.Pool(workers=1, backend="thread") as pool:
        with mp.testing.serial():
            _, pid, thread = pool.submit(where, 1).result()
        assert (pid, thread) == (os.getpid(), threading.current_thread().name)
        # after the block, the pool's own engine runs its tasks again
        assert pool.submit(where, 2).result(DEADLINE)[2] != threading.current_thread().name


def test_the_default_pool_is_real_again_after_the_block() -> None:
    with mp.testing.serial():
        assert remote_where(1).result()[1] == os.getpid()
    assert remote_where(2).result(DEADLINE)[1] != os.getpid()


def test_serial_checks_that_arguments_pickle() -> None:
    with mp.testing.serial(), pytest.raises(mp.SerializationError, match="cannot send argument"):
        mp.parallel(echo)(threading.Lock()).result()


def test_serial_checks_that_results_pickle() -> None:
    with mp.testing.serial(), pytest.raises(mp.SerializationError, match="cannot be pickled"):
        mp.parallel(returns_lock)().result()


def test_serial_sends_exceptions_back_as_a_worker_would() -> None:
    with mp.testing.serial():
        with pytest.raises(ZeroDivisionError) as caught:
            mp.parallel(divide)(1, 0).result()
        assert "ZeroDivisionError" in str(caught.value.__cause__)  # the traceback, as text
        with pytest.raises(mp.TaskError, match="could not be sent back"):
            mp.parallel(raise_unpicklable)().result()


def test_serial_without_pickle_check_passes_objects_through() -> None:
    lock = threading.Lock()
    with mp.testing.serial(check_pickle=False):
        assert mp.parallel(echo)(lock).result() is lock


def test_serial_lambdas_travel_by_value_as_with_cloudpickle() -> None:
    offset = 10
    with mp.testing.serial():
        assert mp.parallel_map(lambda x: x + offset, [1, 2]) == [11, 12]


def test_serial_records_events_and_metrics_as_a_real_pool_does() -> None:
    events: list[mp.TaskEvent] = []
    with mp.testing.serial(), mp.Pool(name="tested") as pool:
        pool.add_listener(events.append)
        pool.submit(divide, 4, 2).result()
        with pytest.raises(ZeroDivisionError):
            pool.submit(divide, 1, 0).result()
        from makeparallel.observe.events import flush_events

        assert flush_events(DEADLINE)
        counts = pool.metrics().to_dict()
    finished = [e.outcome for e in events if e.kind == "finished"]
    assert finished == ["succeeded", "failed"]
    assert counts["submitted"] == 2
    assert counts["failed"] == 1


def test_a_mode_can_be_switched_on_and_off_for_a_session() -> None:
    mode = mp.testing.serial().start()
    try:
        assert remote_where(1).result()[1] == os.getpid()
    finally:
        mode.stop()
    assert remote_where(1).result(DEADLINE)[1] != os.getpid()


# -- deterministic -----------------------------------------------------------------------


def run_order(seed: int) -> list[int]:
    finished: list[int] = []
    with mp.testing.deterministic(seed=seed):
        handles = [mp.parallel(echo)(i) for i in range(8)]
        for handle in handles:
            handle.add_done_callback(lambda h: finished.append(h.result()))
        assert finished == []  # held until someone waits
        handles[0].result()
        assert sorted(finished) == list(range(8))  # the first wait ran them all
    return finished


def test_deterministic_shuffles_the_order_and_repeats_it_for_a_seed() -> None:
    first = run_order(seed=7)
    assert run_order(seed=7) == first
    orders = {tuple(run_order(seed)) for seed in range(5)}
    assert len(orders) > 1
    assert tuple(range(8)) != first or len(orders) > 1


def test_deterministic_a_task_may_wait_for_a_task_it_submitted() -> None:
    with mp.testing.deterministic(seed=3):
        outer = mp.parallel(nested_sum)(4)
        assert outer.result() == 0 + 1 + 2 + 3


def test_deterministic_runs_held_tasks_at_block_exit() -> None:
    with mp.testing.deterministic(seed=1):
        handle = mp.parallel(echo)(5)
        assert not handle.done()
    assert handle.done()
    assert handle.result() == 5


def test_deterministic_unordered_imap_yields_in_the_shuffled_order() -> None:
    with mp.testing.deterministic(seed=2):
        got = list(mp.imap(echo, range(5), chunksize=1, ordered=False))
    assert sorted(got) == list(range(5))
    with mp.testing.deterministic(seed=2):
        assert list(mp.imap(echo, range(5), chunksize=1, ordered=False)) == got


def test_deterministic_a_pool_shut_down_in_the_block_waits_for_its_held_tasks() -> None:
    with mp.testing.deterministic(seed=4):
        with mp.Pool(workers=2) as pool:
            handles = [pool.submit(echo, i) for i in range(3)]
        assert all(h.done() for h in handles)
    assert [h.result() for h in handles] == [0, 1, 2]


def test_run_pending_lets_concurrent_futures_wait() -> None:
    import concurrent.futures

    with mp.testing.deterministic(seed=0):
        handles = [mp.parallel(echo)(i) for i in range(3)]
        mp.testing.run_pending()
        done, _ = concurrent.futures.wait(handles, timeout=0)
    assert len(done) == 3


def test_a_cancelled_held_task_never_runs() -> None:
    with mp.testing.deterministic(seed=0):
        handle = mp.parallel(echo)(1)
        assert handle.cancel()
    assert handle.cancelled()
    assert handle.attempts == 0


def test_a_task_cancelled_before_it_ran_can_still_be_run_inline() -> None:
    with mp.testing.deterministic(seed=0):
        handle = mp.parallel(divide)(6, 3)
        assert handle.cancel()
    assert handle.rerun_inline() == 2


def test_mp_testing_loads_on_first_use() -> None:
    code = (
        "import sys, makeparallel as mp\n"
        "before = 'makeparallel.testing' in sys.modules\n"
        "mp.testing.serial\n"
        "print(before, 'makeparallel.testing._modes' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


# -- the fake clock ------------------------------------------------------------------------


def test_retry_back_off_runs_without_sleeping() -> None:
    flaky = mp.parallel(
        retry=mp.Retry(4, backoff=mp.Exponential(initial=60, factor=2, maximum=600))
    )(fail_until)
    started = time.monotonic()
    with mp.testing.serial(), mp.testing.fake_clock() as clock:
        before = clock.monotonic()
        handle = flaky(3)
        assert handle.result() == "up"
        waited = clock.monotonic() - before
    assert handle.attempts == 3
    assert waited == 60 + 120  # the back-off of attempts 2 and 3, on the fake clock
    assert time.monotonic() - started < 60  # three minutes of back-off, no real wait


def test_a_timeout_fires_when_the_fake_clock_passes_it() -> None:
    with mp.testing.serial(), mp.testing.fake_clock() as clock:

        @mp.parallel(timeout=5)
        def slow() -> str:
            clock.advance(6)  # the clock travels by reference: this is the installed one
            return "too late"

        with pytest.raises(mp.TaskTimeoutError, match="timed out after 5 s"):
            slow().result()


def test_a_timeout_on_a_thread_pool_waits_for_the_fake_clock() -> None:
    started = threading.Event()
    release = threading.Event()

    def block() -> None:
        started.set()
        release.wait(DEADLINE)

    with mp.testing.fake_clock() as clock, mp.Pool(workers=1, backend="thread") as pool:
        handle = mp.parallel(timeout=2, pool=pool)(block)()
        assert started.wait(DEADLINE)
        clock.advance(1)
        assert not handle.done()
        clock.advance(1.5)
        assert isinstance(handle.exception(timeout=0), mp.TaskTimeoutError)
        release.set()


def test_a_circuit_breaker_half_opens_when_the_fake_clock_passes_reset_timeout() -> None:
    breaker = mp.CircuitBreaker(failure_threshold=2, reset_timeout=30)
    guarded = mp.parallel(circuit_breaker=breaker)(divide)
    with mp.testing.serial(), mp.testing.fake_clock() as clock:
        for _ in range(2):
            with pytest.raises(ZeroDivisionError):
                guarded(1, 0).result()
        with pytest.raises(mp.CircuitOpenError):
            guarded(1, 1).result()
        clock.advance(29)
        assert breaker.state == mp.CircuitState.OPEN
        clock.advance(1)
        assert breaker.state == mp.CircuitState.HALF_OPEN
        assert guarded(4, 2).result() == 2
        assert breaker.state == mp.CircuitState.CLOSED


def test_the_fake_clock_only_moves_forward() -> None:
    with mp.testing.fake_clock() as clock, pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_a_clock_captured_outside_its_process_says_why_it_fails() -> None:
    clock = mp.testing.fake_clock()
    with pytest.raises(RuntimeError, match="no fake clock is installed"):
        mp.testing.installed_clock()
    with clock:
        assert mp.testing.installed_clock() is clock


# -- rerun_inline and debug mode -------------------------------------------------------


def test_rerun_inline_raises_the_failure_again_in_this_thread(
    process_pool: mp.Pool,
) -> None:
    handle = process_pool.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError):
        handle.result(DEADLINE)
    with pytest.raises(ZeroDivisionError) as caught:
        handle.rerun_inline()
    frames = []
    tb = caught.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "divide"  # the real traceback, down to the function


def test_rerun_inline_of_a_succeeded_task_needs_debug_mode(thread_pool: mp.Pool) -> None:
    handle = thread_pool.submit(divide, 4, 2)
    assert handle.result(DEADLINE) == 2
    with pytest.raises(RuntimeError, match="MAKEPARALLEL_DEBUG"):
        handle.rerun_inline()


class Payload:
    """An argument whose lifetime a weak reference can watch."""


def test_a_failed_handle_keeps_its_arguments_for_rerun_inline(serial_pool: mp.Pool) -> None:
    payload = Payload()
    ref = weakref.ref(payload)
    failed = serial_pool.submit(divide, payload, 0)
    assert isinstance(failed.exception(), TypeError)
    del payload
    assert ref() is not None  # kept by the handle ...
    with pytest.raises(TypeError, match="Payload"):
        failed.rerun_inline()  # ... to raise the failure again here


def test_a_succeeded_handle_lets_its_arguments_go(serial_pool: mp.Pool) -> None:
    payload = Payload()
    ref = weakref.ref(payload)
    handle = serial_pool.submit(id, payload)
    assert handle.result() > 0
    del payload
    assert ref() is None  # freed although the handle lives on
    assert handle.done()


def test_rerun_inline_refuses_an_unfinished_task(one_thread_pool: mp.Pool) -> None:
    release = threading.Event()
    handle = one_thread_pool.submit(release.wait, DEADLINE)
    try:
        with pytest.raises(RuntimeError, match="has not finished"):
            handle.rerun_inline()
    finally:
        release.set()
    handle.result(DEADLINE)


def test_debug_mode_runs_inline_logs_and_keeps_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mp.configure(debug=True)
    try:
        with caplog.at_level(logging.INFO, logger="makeparallel"):
            handle = remote_where(3)
            assert handle.result()[1] == os.getpid()
        assert handle.rerun_inline()[0] == 3  # kept although it succeeded
        lines = [r.getMessage() for r in caplog.records]
        assert any("started" in line and "remote_where" in line for line in lines)
        assert any("returned" in line for line in lines)
        with pytest.raises(ZeroDivisionError) as caught:
            mp.parallel(divide)(1, 0).result()
        assert caught.value.__cause__ is None  # the original exception, not a pickled copy
        assert caught.value.__traceback__ is not None
    finally:
        mp.configure(debug=False)
    assert remote_where(1).result(DEADLINE)[1] != os.getpid()


SCRIPT = """
import os, makeparallel as mp

def square(x):
    return x * x, os.getpid()

if __name__ == "__main__":
    value, pid = mp.parallel(square)(7).result()
    print(value, pid == os.getpid())
"""


def test_the_debug_environment_variable_runs_everything_inline(tmp_path: object) -> None:
    script = os.path.join(str(tmp_path), "debugged.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    env = dict(os.environ, MAKEPARALLEL_DEBUG="1")
    done = subprocess.run(
        [sys.executable, script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["49", "True"]


def test_doctor_reports_start_method_main_bytecode_extras_and_hazards() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "makeparallel", "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "start method fork" in out or "start method spawn" in out
    assert "__main__     importable by workers" in out
    assert "PYTHONDONTWRITEBYTECODE is set" in out
    assert "prometheus yes" in out
    assert "hazards" in out
