"""The first mistakes people make with makeparallel, and the errors that say the fix.

One test per mistake, in the order of docs/errors.md; each asserts that the
message names what went wrong and what to do instead (or, where the mistake
turns out to be harmless, that it works).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading
from pathlib import Path

import pytest

import makeparallel as mp
from polling import wait_until
from programs import run_program, write_program


def identity(x: object) -> object:
    return x


def refuse(x: object) -> object:
    raise TypeError(f"refusing {x!r}")


def squares_in_a_pool_of_its_own(n: int) -> list[int]:
    with mp.Pool(workers=1, backend="process") as inner:
        return list(inner.map(pow, range(n), [2] * n))


# 1
def test_an_argument_that_cannot_be_pickled() -> None:
    with mp.Pool(workers=1, backend="process", start="spawn") as pool:
        handle = pool.submit(identity, threading.Lock())
        with pytest.raises(mp.SerializationError) as caught:
            handle.result(timeout=30)
    message = str(caught.value)
    assert "cannot send argument 0 (a _thread.lock" in message
    assert "pass plain data, or use backend='thread'" in message


# 2
def test_a_lambda_on_a_process_pool_executor() -> None:
    spawn = multiprocessing.get_context("spawn")
    with (
        concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as executor,
        mp.Pool(backend=executor) as pool,
    ):
        handle = pool.submit(lambda: 1)
        with pytest.raises(mp.SerializationError) as caught:
            handle.result(timeout=30)
        # A task's own TypeError is not taken for a pickling failure.
        with pytest.raises(TypeError, match="refusing 2"):
            pool.submit(refuse, 2).result(timeout=30)
    message = str(caught.value)
    assert "ProcessPoolExecutor could not send the function" in message
    assert "<lambda>" in message
    assert "Define it at module level, or use backend='process'" in message


# 3
def test_waiting_for_another_task_inside_a_callback() -> None:
    release = threading.Event()
    seen: list[BaseException | object] = []
    with (
        mp.Pool(workers=1, backend="thread") as pool,
        mp.Pool(workers=1, backend="thread") as other,
    ):
        first = pool.submit(identity, 1)
        blocked = pool.submit(release.wait, 30)

        def callback(done: concurrent.futures.Future[object]) -> None:
            seen.append(done.result())  # its own handle has ended: fine
            seen.append(other.submit(identity, 2).result(timeout=30))  # another pool: fine
            try:
                seen.append(blocked.result(timeout=30))
            except RuntimeError as error:
                seen.append(error)

        first.add_done_callback(callback)
        wait_until(lambda: len(seen) == 3, what="the callback")
        release.set()
    assert seen[:2] == [1, 2]
    assert isinstance(seen[2], RuntimeError)
    message = str(seen[2])
    assert f"waiting for task {blocked.task_id}" in message
    assert "inside a callback of another task of its pool" in message
    assert "chain the next step with on_complete or add_done_callback" in message


# 4
def test_submitting_to_a_pool_that_is_shut_down() -> None:
    pool = mp.Pool(workers=1, backend="thread", name="done")
    pool.shutdown()
    with pytest.raises(RuntimeError) as caught:
        pool.submit(identity, 1)
    message = str(caught.value)
    assert "cannot schedule new futures after shutdown: pool 'done' is shut down" in message
    assert "create a new Pool" in message


# 5
def test_a_parallel_function_defined_inside_a_function_on_a_spawn_pool() -> None:
    lock = threading.Lock()
    with mp.Pool(workers=1, backend="process", start="spawn") as pool:

        @mp.parallel(pool=pool)
        def add_one(x: int) -> int:
            return x + 1

        @mp.parallel(pool=pool)
        def locked(x: int) -> int:
            with lock:
                return x

        # cloudpickle sends the nested function by value: it works.
        assert add_one(1).result(timeout=30) == 2
        # What it refers to must travel too, and a lock cannot.
        with pytest.raises(mp.SerializationError) as caught:
            locked(1).result(timeout=30)
    message = str(caught.value)
    assert "cannot send the function" in message
    assert "locked" in message
    assert "define it at module level, or use backend='thread'" in message


# 6
def test_a_generator_as_an_argument() -> None:
    with mp.Pool(workers=1, backend="process", start="spawn") as pool:
        handle = pool.submit(list, (n * n for n in range(3)))
        with pytest.raises(mp.SerializationError) as caught:
            handle.result(timeout=30)
    message = str(caught.value)
    assert "cannot send argument 0 (a generator" in message
    assert "pass list(...) of its values" in message
    assert "mp.imap(fn, generator)" in message


# 7
def test_a_full_queue_with_max_pending() -> None:
    release = threading.Event()
    with mp.Pool(workers=1, backend="thread", max_pending=1, pending_timeout=0) as pool:
        try:
            running = pool.submit(release.wait, 30)
            wait_until(running.running, what="the first task to start")
            pool.submit(release.wait, 30)  # waits: the queue is full
            with pytest.raises(mp.PoolFullError) as caught:
                pool.submit(release.wait, 30)
        finally:
            release.set()
    message = str(caught.value)
    assert "already has 1 task waiting (max_pending)" in message
    assert "raise max_pending, or set pending_timeout to wait longer" in message


# 8
def test_leaving_the_program_with_work_still_running(tmp_path: Path) -> None:
    script = tmp_path / "forgot.py"
    write_program(
        script,
        """
        import threading, time
        import makeparallel as mp

        def forever():
            threading.Event().wait()

        if __name__ == "__main__":
            mp.configure(exit_timeout=0.2)
            handle = mp.Pool(workers=1, backend="thread").submit(forever)
            while not handle.running():
                time.sleep(0.01)
        """,
    )
    stderr = run_program(script).stderr
    assert "1 task(s) still running 0.2 s after the program ended were stopped" in stderr
    assert "wait for your results before exiting" in stderr
    assert "mp.configure(exit_timeout=...)" in stderr


# 9
def test_a_pool_inside_a_worker() -> None:
    with mp.Pool(workers=1, backend="process", start="spawn") as pool:
        assert pool.submit(squares_in_a_pool_of_its_own, 4).result(timeout=60) == [0, 1, 4, 9]


# 10
def test_report_progress_outside_a_task() -> None:
    with pytest.raises(ValueError, match="outside a task") as caught:
        mp.report_progress(0.5)
    message = str(caught.value)
    assert "report_progress() was called outside a task" in message
    assert "call it from a function run by @parallel, Pool.submit or a map" in message
    assert mp.current_task() is None  # the way to ask whether code runs as a task
