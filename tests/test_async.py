"""Async code: ``await handle``, ``async with Pool``, ``aimap``, ``agather``, on asyncio and trio.

The async tests run once on each backend through anyio's pytest plugin; the
few that are about asyncio itself (``asyncio.shield``, a loop that closes)
use ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trio

import makeparallel as mp
from polling import alive, wait_for_file, wait_until
from processes import worker_pids

DEADLINE = 30.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- functions the workers run ---------------------------------------------------


def square(x: int) -> int:
    return x * x


def hang_forever() -> None:
    while True:
        time.sleep(0.01)


def wait_then(path: str, value: int) -> int:
    wait_for_file(path, timeout=DEADLINE)
    return value


def hang_unless_zero(x: int) -> int:
    """Item 0 returns at once; every other item runs until it is stopped."""
    if x:
        hang_forever()
    return x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x * 10


# -- helpers -------------------------------------------------------------------------


async def eventually(condition: Callable[[], object], what: str) -> None:
    """Wait (without blocking the loop) for something a worker process does."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.005)


async def start_awaiting(group: anyio.abc.TaskGroup, awaitable: Callable[[], Any]) -> None:
    """Start a task in ``group`` that awaits ``awaitable()``; return once it waits."""

    async def wait(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        await awaitable()  # (no checkpoint between the two: it waits when start returns)

    await group.start(wait)


def busy_workers(pool: mp.Pool) -> list[int]:
    return [worker["pid"] for worker in pool.workers_info() if worker["state"] == "busy"]


def release(path: Path) -> None:
    path.write_text("go")


# -- await handle -------------------------------------------------------------------


@pytest.mark.anyio
async def test_awaiting_a_handle_gives_its_result_or_its_exception() -> None:
    async with mp.Pool(workers=1, backend="process") as pool:
        assert await pool.submit(square, 7) == 49
        with pytest.raises(ValueError, match="bad item 3"):
            await pool.submit(fail_on_three, 3)


@pytest.mark.anyio
async def test_cancelling_the_awaiting_task_kills_the_process_task() -> None:
    async with mp.Pool(workers=1, backend="process") as pool:
        handle = pool.submit(hang_forever)
        async with anyio.create_task_group() as group:
            await start_awaiting(group, lambda: handle)
            await eventually(handle.running, "the task to start")
            (before,) = worker_pids(pool)
            group.cancel_scope.cancel()

        assert handle.state is mp.TaskState.CANCELLED
        await eventually(lambda: not alive(before), "the worker that ran the task to end")
        assert await pool.submit(square, 5) == 25  # on the worker that replaced it
        assert worker_pids(pool) != [before]


@pytest.mark.anyio
async def test_a_shielded_await_lets_the_task_finish(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    value: int | None = None
    async with mp.Pool(workers=1, backend="process") as pool:
        handle = pool.submit(wait_then, str(gate), 5)

        async def open_gate_once_running() -> None:
            await eventually(handle.running, "the task to start")
            release(gate)

        async with anyio.create_task_group() as group:
            group.start_soon(open_gate_once_running)
            with anyio.CancelScope() as outer:
                outer.cancel()  # every unshielded await in here is cancelled
                with anyio.CancelScope(shield=True):
                    value = await handle
        assert value == 5
        assert handle.state is mp.TaskState.SUCCEEDED


def test_asyncio_shield_keeps_the_task_running_when_the_awaiting_task_is_cancelled(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"

    async def main(pool: mp.Pool) -> tuple[mp.TaskState, int]:
        handle = pool.submit(wait_then, str(gate), 6)

        async def shielded() -> int:
            return await asyncio.shield(handle)

        waiter = asyncio.create_task(shielded())
        await eventually(handle.running, "the task to start")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        state_after_cancel = handle.state
        release(gate)
        return state_after_cancel, await handle

    with mp.Pool(workers=1, backend="process") as pool:
        state, value = asyncio.run(main(pool))
    assert state is mp.TaskState.RUNNING
    assert value == 6


def test_asyncio_wait_for_cancels_a_task_past_its_timeout() -> None:
    async def main(pool: mp.Pool) -> mp.Handle[None]:
        handle = pool.submit(hang_forever)
        await eventually(handle.running, "the task to start")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(handle, 0.05)
        return handle

    with mp.Pool(workers=1, backend="process") as pool:
        handle = asyncio.run(main(pool))
        assert handle.state is mp.TaskState.CANCELLED


@pytest.mark.anyio
async def test_cancelling_the_awaiting_task_flags_a_thread_task() -> None:
    saw_flag = threading.Event()

    def cooperative() -> None:
        task = mp.current_task()
        assert task is not None
        while not task.cancelled():
            time.sleep(0.001)
        saw_flag.set()

    async with mp.Pool(workers=1, backend="thread") as pool:
        handle = pool.submit(cooperative)
        with anyio.move_on_after(DEADLINE) as scope:
            async with anyio.create_task_group() as group:
                await start_awaiting(group, lambda: handle)
                await eventually(handle.running, "the task to start")
                group.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert handle.cancelled()
        await eventually(saw_flag.is_set, "the task to see current_task().cancelled()")


def test_awaiting_with_no_event_loop_fails_and_leaves_the_task_alone() -> None:
    gate = threading.Event()
    with mp.Pool(workers=1, backend="thread") as pool:
        handle = pool.submit(gate.wait, DEADLINE)
        waiting = handle.__await__()
        with pytest.raises(RuntimeError, match="no running event loop"):
            next(waiting)
        assert not handle.cancelled()
        gate.set()
        assert handle.result(timeout=DEADLINE) is True


def test_the_async_api_imports_no_async_library_until_it_is_used() -> None:
    code = (
        "import sys, makeparallel as mp; mp.aimap, mp.agather, mp.Pool.__aexit__; "
        "print(sorted({'asyncio', 'anyio', 'trio', 'sniffio'} & set(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


# -- async with Pool --------------------------------------------------------------


@pytest.mark.anyio
async def test_the_end_of_async_with_lets_the_event_loop_run(tmp_path: Path) -> None:
    # The task ends only when a coroutine has ticked 20 times, and the pool's exit
    # waits for the task: if the exit blocked the loop, the test would time out.
    gate = tmp_path / "gate"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while ticks < 20:
            ticks += 1
            await anyio.sleep(0.001)
        release(gate)

    async with anyio.create_task_group() as group:
        async with mp.Pool(workers=1, backend="process") as pool:
            handle = pool.submit(wait_then, str(gate), 3)
            group.start_soon(ticker)
        assert ticks == 20
        assert handle.result(timeout=0) == 3
        assert pool.health().state == "closed"


@pytest.mark.anyio
async def test_a_cancelled_async_with_block_cancels_the_pools_tasks() -> None:
    async with anyio.create_task_group() as group:
        pool = mp.Pool(workers=1, backend="process")
        handles: list[mp.Handle[None]] = []

        async def body() -> None:
            async with pool:
                handles.extend([pool.submit(hang_forever), pool.submit(hang_forever)])
                await anyio.sleep_forever()

        group.start_soon(body)
        await eventually(lambda: handles and handles[0].running(), "the task to start")
        (worker,) = worker_pids(pool)
        group.cancel_scope.cancel()

    assert [h.state for h in handles] == [mp.TaskState.CANCELLED] * 2
    assert pool.health().state == "closed"
    await eventually(lambda: not alive(worker), "the worker that ran the task to end")


# -- aimap ---------------------------------------------------------------------------


def counted(items: list[int], pulled: list[int]) -> Iterator[int]:
    for item in items:
        pulled.append(item)
        yield item


async def counted_async(items: list[int], pulled: list[int]) -> AsyncIterator[int]:
    for item in items:
        await anyio.sleep(0)
        pulled.append(item)
        yield item


@pytest.mark.anyio
@pytest.mark.parametrize(("source", "ordered"), [(counted, True), (counted_async, False)])
async def test_aimap_keeps_at_most_window_tasks_out(
    source: Callable[[list[int], list[int]], Any], ordered: bool
) -> None:
    pulled: list[int] = []
    got: list[int] = []
    most_out = most_in_pool = 0
    async with mp.Pool(workers=2, backend="process") as pool:
        async for value in mp.aimap(
            square, source(list(range(20)), pulled), pool=pool, window=3, ordered=ordered
        ):
            most_out = max(most_out, len(pulled) - len(got))
            metrics = pool.metrics()
            most_in_pool = max(most_in_pool, metrics.running + metrics.queued)
            got.append(value)
    assert most_out == 3
    assert most_in_pool <= 3
    assert (got if ordered else sorted(got)) == [x * x for x in range(20)]


@pytest.mark.anyio
async def test_aimap_window_defaults_to_twice_the_pools_workers() -> None:
    pulled: list[int] = []
    got: list[int] = []
    most_out = 0
    async with mp.Pool(workers=2, backend="process") as pool:
        async for value in mp.aimap(square, counted(list(range(12)), pulled), pool=pool):
            most_out = max(most_out, len(pulled) - len(got))
            got.append(value)
    assert most_out == 4
    assert got == [x * x for x in range(12)]


@pytest.mark.anyio
async def test_unordered_aimap_yields_results_as_they_finish(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    got: list[int] = []
    async with mp.Pool(workers=2, backend="process") as pool:
        slow = lambda x: wait_then(str(gate), x) if x == 0 else x  # noqa: E731
        async for value in mp.aimap(slow, [0, 1, 2], pool=pool, ordered=False):
            got.append(value)
            if len(got) == 2:
                release(gate)
    assert got[:2] == [1, 2] or got[:2] == [2, 1]
    assert got[2] == 0


@pytest.mark.anyio
async def test_breaking_out_of_aimap_cancels_the_tasks_still_out() -> None:
    async with mp.Pool(workers=2, backend="process") as pool:
        async for value in mp.aimap(hang_unless_zero, range(100), pool=pool, window=3):
            assert value == 0
            await eventually(lambda: busy_workers(pool), "a hanging task to start")
            busy = busy_workers(pool)
            break
        await eventually(lambda: pool.metrics().cancelled == 2, "the two other tasks to end")
        assert pool.metrics().submitted == 3  # the rest of the input was never read
        await eventually(lambda: not any(map(alive, busy)), "the workers that ran them to end")
        await eventually(lambda: pool.tasks() == [], "the pool to forget them")
        assert await pool.submit(square, 4) == 16


@pytest.mark.anyio
async def test_closing_aimap_cancels_the_tasks_still_out() -> None:
    async with mp.Pool(workers=2, backend="process") as pool:
        async with mp.aimap(hang_unless_zero, range(100), pool=pool, window=3) as results:
            assert await anext(results) == 0
        await eventually(lambda: pool.metrics().cancelled == 2, "the two other tasks to end")
        with pytest.raises(StopAsyncIteration):
            await anext(results)


@pytest.mark.anyio
async def test_cancelling_the_task_that_iterates_cancels_the_tasks_still_out() -> None:
    async with mp.Pool(workers=2, backend="process") as pool:
        results = mp.aimap(hang_unless_zero, range(100), pool=pool, window=3)
        with anyio.CancelScope() as scope:
            async for _ in results:
                await eventually(lambda: pool.metrics().running == 2, "both workers to be busy")
                scope.cancel()  # the next wait for a result is cancelled
        assert scope.cancelled_caught
        # (two running, and one more submitted as the loop asked for the next result)
        await eventually(lambda: pool.metrics().cancelled == 3, "the tasks still out to end")
        assert pool.metrics().submitted == 4
        await eventually(lambda: pool.tasks() == [], "the pool to forget them")


@pytest.mark.anyio
async def test_aimap_on_error_raise_return_and_skip() -> None:
    async with mp.Pool(workers=2, backend="process") as pool:
        with pytest.raises(ValueError, match="bad item 3"):
            async for _ in mp.aimap(fail_on_three, range(6), pool=pool):
                pass
        returned = [
            v async for v in mp.aimap(fail_on_three, range(6), pool=pool, on_error="return")
        ]
        skipped = [v async for v in mp.aimap(fail_on_three, range(6), pool=pool, on_error="skip")]
    assert isinstance(returned[3], ValueError)
    assert returned[:3] + returned[4:] == [0, 10, 20, 40, 50]
    assert skipped == [0, 10, 20, 40, 50]


@pytest.mark.anyio
async def test_aimap_runs_a_parallel_function_with_its_own_options() -> None:
    pool = mp.Pool(workers=1, backend="thread")
    decorated = mp.parallel(name="squaring", pool=pool)(square)
    async with pool:
        assert [v async for v in mp.aimap(decorated, range(4))] == [0, 1, 4, 9]
        assert pool.metrics().submitted == 4


@pytest.mark.anyio
async def test_aimap_timeout_is_per_item() -> None:
    async with mp.Pool(workers=2, backend="process") as pool:
        results = mp.aimap(hang_unless_zero, [0, 1], pool=pool, timeout=1.0, on_error="return")
        first, second = [r async for r in results]
    assert first == 0
    assert isinstance(second, mp.TaskTimeoutError)


def test_aimap_refuses_what_it_cannot_run() -> None:
    async def coroutine_function(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="async def"):
        mp.aimap(coroutine_function, [1])
    with pytest.raises(TypeError, match="callable"):
        mp.aimap(42, [1])  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="window"):
        mp.aimap(square, [1], window=0)
    with pytest.raises(TypeError, match="iterable"):
        mp.aimap(square, 5)  # type: ignore[call-overload]


# -- agather -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_agather_gives_results_in_order_and_handles_failures_as_gather_does() -> None:
    async with mp.Pool(workers=2, backend="process") as pool:
        assert await mp.agather([pool.submit(square, x) for x in range(5)]) == [0, 1, 4, 9, 16]
        handles = [pool.submit(fail_on_three, x) for x in range(5)]
        returned = await mp.agather(handles, on_error="return")
        assert await mp.agather(handles, on_error="skip") == [0, 10, 20, 40]
        with pytest.raises(ValueError, match="bad item 3"):
            await mp.agather(handles)
        assert await mp.agather([]) == []
    assert isinstance(returned[3], ValueError)
    assert returned[:3] + returned[4:] == [0, 10, 20, 40]


@pytest.mark.anyio
async def test_agather_raises_the_first_failure_while_the_others_run_on(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with mp.Pool(workers=2, backend="process") as pool:
        waiting = pool.submit(wait_then, str(gate), 1)
        with pytest.raises(ValueError, match="bad item 3"):
            await mp.agather([waiting, pool.submit(fail_on_three, 3)])
        assert waiting.state is mp.TaskState.RUNNING
        release(gate)
        assert await waiting == 1


@pytest.mark.anyio
async def test_agather_timeout_leaves_the_tasks_running(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with mp.Pool(workers=2, backend="process") as pool:
        finished = pool.submit(square, 3)
        assert await finished == 9
        waiting = pool.submit(wait_then, str(gate), 2)
        with pytest.raises(TimeoutError, match=r"1 task\(s\) unfinished after 0\.05 s"):
            await mp.agather([waiting, finished], timeout=0.05)
        assert not waiting.done()
        release(gate)
        assert await mp.agather([waiting]) == [2]


@pytest.mark.anyio
async def test_cancelling_agather_cancels_the_unfinished_tasks() -> None:
    async with mp.Pool(workers=2, backend="process") as pool:
        finished = pool.submit(square, 2)
        assert await finished == 4
        hung = pool.submit(hang_forever)
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                await start_awaiting(group, lambda: mp.agather([finished, hung]))
                await eventually(hung.running, "the task to start")
                scope.cancel()
        assert hung.state is mp.TaskState.CANCELLED
        assert finished.state is mp.TaskState.SUCCEEDED


def test_agather_refuses_coroutines() -> None:
    async def main() -> None:
        coroutine = asyncio.sleep(0)
        try:
            await mp.agather([coroutine])  # type: ignore[list-item]
        finally:
            coroutine.close()

    with pytest.raises(TypeError, match=r"asyncio\.gather"):
        asyncio.run(main())


# -- testing modes -------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_waits_run_the_tasks_a_deterministic_mode_holds() -> None:
    with mp.testing.deterministic(seed=1):
        async with mp.Pool(workers=2, backend="process") as pool:
            handle = pool.submit(square, 3)
            assert handle.state is mp.TaskState.PENDING  # held until code waits
            assert await handle == 9
            assert [v async for v in mp.aimap(square, range(4), pool=pool)] == [0, 1, 4, 9]
            assert await mp.agather([pool.submit(square, x) for x in range(3)]) == [0, 1, 4]


# -- a loop that closes first --------------------------------------------------------


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_a_loop_that_closes_before_the_results_arrive_is_left_alone(
    library: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = tmp_path / "gate"
    kept: list[Any] = []

    async def main(pool: mp.Pool) -> None:
        results = mp.aimap(lambda x: x if x == 0 else wait_then(str(gate), x), range(3), pool=pool)
        assert await anext(results) == 0
        kept.append(results)  # still waiting for two results as the loop closes

    caplog.set_level(logging.DEBUG)
    with mp.Pool(workers=3, backend="process") as pool:
        if library == "trio":
            trio.run(main, pool)
        else:
            asyncio.run(main(pool))
        waiting = pool.tasks()
        assert len(waiting) == 2
        release(gate)  # their done callbacks now call into the closed loop
        wait_until(lambda: pool.metrics().completed == 3, what="the tasks to finish")
    kept.clear()
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == []
