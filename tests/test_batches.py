"""Batches: parallel_map, imap, gather, as_completed, Pool.map."""

from __future__ import annotations

import collections
import gc
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import makeparallel as mp

DEADLINE = 10.0


# -- functions workers import by name ---------------------------------------------------


def square(x: int) -> int:
    return x * x


def fail_on_multiples_of_three(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"bad item {x}")
    return x * 10


def add(a: int, b: int) -> int:
    return a + b


def pid_of(_: object) -> int:
    return os.getpid()


def thread_of(_: object) -> int:
    return threading.get_ident()


def wait_for(release: threading.Event) -> bool:
    return release.wait(DEADLINE)


def raise_key_error(key: str) -> None:
    raise KeyError(key)


def raise_value_error(message: str) -> None:
    raise ValueError(message)


@mp.parallel(backend="thread")
def pid_of_thread_task(_: object) -> int:
    return os.getpid()


@pytest.fixture(params=["process", "thread"])
def pool(request: pytest.FixtureRequest, process_pool: mp.Pool, thread_pool: mp.Pool) -> mp.Pool:
    return process_pool if request.param == "process" else thread_pool


def on(pool: mp.Pool, fn: Callable[..., Any]) -> mp.ParallelFunction[..., Any]:
    """``fn`` bound to ``pool``: the batch helpers then run on that pool."""
    return mp.parallel(pool=pool)(fn)


# -- parallel_map -------------------------------------------------------------------------


def test_parallel_map_equals_the_list_comprehension(pool: mp.Pool) -> None:
    items = list(range(50))

    assert mp.parallel_map(on(pool, square), items) == [square(x) for x in items]


def test_parallel_map_on_the_default_pool_uses_other_processes(
    reset_default_pool: None,
) -> None:
    assert mp.parallel_map(square, range(20)) == [x * x for x in range(20)]
    assert os.getpid() not in mp.parallel_map(pid_of, range(4))


def test_parallel_map_of_nothing_is_an_empty_list(pool: mp.Pool) -> None:
    assert mp.parallel_map(on(pool, square), []) == []


def test_parallel_map_over_a_generator(pool: mp.Pool) -> None:
    assert mp.parallel_map(on(pool, square), (x for x in range(30))) == [x * x for x in range(30)]


def test_parallel_map_unordered_returns_the_same_items(pool: mp.Pool) -> None:
    items = [x % 7 for x in range(60)]

    results = mp.parallel_map(on(pool, square), items, ordered=False)

    assert collections.Counter(results) == collections.Counter(square(x) for x in items)


def test_parallel_map_on_error_raise(pool: mp.Pool) -> None:
    with pytest.raises(ValueError, match=r"bad item \d+"):
        mp.parallel_map(on(pool, fail_on_multiples_of_three), range(10))


def test_parallel_map_on_error_skip(pool: mp.Pool) -> None:
    results = mp.parallel_map(on(pool, fail_on_multiples_of_three), range(10), on_error="skip")

    assert results == [x * 10 for x in range(10) if x % 3]


def test_parallel_map_on_error_return(pool: mp.Pool) -> None:
    results = mp.parallel_map(on(pool, fail_on_multiples_of_three), range(10), on_error="return")

    assert len(results) == 10
    for x, result in enumerate(results):
        if x % 3 == 0:
            assert isinstance(result, ValueError)
            assert str(result) == f"bad item {x}"
        else:
            assert result == x * 10


def test_parallel_map_with_its_own_pool_of_workers() -> None:
    assert mp.parallel_map(square, range(25), workers=2) == [x * x for x in range(25)]


def test_parallel_map_with_workers_keeps_the_functions_backend() -> None:
    pids = mp.parallel_map(pid_of_thread_task, range(4), workers=2)

    assert set(pids) == {os.getpid()}


def test_parallel_map_draws_a_progress_bar_on_stderr(
    thread_pool: mp.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    results = mp.parallel_map(on(thread_pool, square), range(10), progress=True)

    captured = capsys.readouterr()
    assert results == [x * x for x in range(10)]
    assert "10/10" in captured.err
    assert "100%" in captured.err
    assert captured.out == ""


def test_parallel_map_without_progress_prints_nothing(
    thread_pool: mp.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    mp.parallel_map(on(thread_pool, square), range(10))

    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


@pytest.mark.parametrize("chunksize", [1, 3, 100])
def test_parallel_map_with_an_explicit_chunksize(pool: mp.Pool, chunksize: int) -> None:
    items = list(range(20))

    assert mp.parallel_map(on(pool, square), items, chunksize=chunksize) == [x * x for x in items]


def test_a_chunk_runs_on_one_worker(thread_pool: mp.Pool) -> None:
    threads = mp.parallel_map(on(thread_pool, thread_of), range(10), chunksize=5)

    assert len(set(threads[:5])) == 1
    assert len(set(threads[5:])) == 1


def test_parallel_map_timeout(thread_pool: mp.Pool) -> None:
    release = threading.Event()
    try:
        with pytest.raises(TimeoutError):
            mp.parallel_map(on(thread_pool, wait_for), [release], timeout=0.2)  # type: ignore[call-arg]
    finally:
        release.set()


# -- imap ----------------------------------------------------------------------------------


class Counted:
    """An endless input that counts how many items were pulled from it."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for n in itertools.count():
            self.pulled += 1
            yield n


def test_imap_over_an_endless_generator_is_lazy(pool: mp.Pool) -> None:
    source = Counted()

    results = mp.imap(on(pool, square), iter(source))
    try:
        first = list(itertools.islice(results, 20))
    finally:
        results.close()  # type: ignore[attr-defined]

    assert first == [x * x for x in range(20)]
    assert source.pulled < 10_000


def _child_pids() -> set[int]:
    """Live (non-zombie) child processes of this process, from /proc."""
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.add(int(entry))
    return children


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.02)
    return True


def test_imap_with_workers_never_iterated_leaves_no_worker_behind() -> None:
    before = _child_pids()

    results = mp.imap(square, range(10), workers=2)
    del results
    gc.collect()

    assert _wait_until(lambda: _child_pids() <= before, timeout=3.0), _child_pids() - before


def test_imap_with_workers_fully_iterated_leaves_no_worker_behind() -> None:
    before = _child_pids()

    assert list(mp.imap(square, range(10), workers=2)) == [x * x for x in range(10)]

    assert _wait_until(lambda: _child_pids() <= before, timeout=3.0), _child_pids() - before


def test_imap_unordered_returns_the_same_items(pool: mp.Pool) -> None:
    items = list(range(40))

    results = list(mp.imap(on(pool, square), items, ordered=False))

    assert sorted(results) == [x * x for x in items]


def test_imap_on_error_return(thread_pool: mp.Pool) -> None:
    results = list(
        mp.imap(on(thread_pool, fail_on_multiples_of_three), range(6), on_error="return")
    )

    assert [type(r) for r in results] == [ValueError, int, int, ValueError, int, int]


def test_pool_imap(pool: mp.Pool) -> None:
    assert list(pool.imap(square, range(15))) == [x * x for x in range(15)]
    assert sorted(pool.imap(square, range(15), ordered=False)) == [x * x for x in range(15)]


def wait_and_count(release: threading.Event, ran: list[bool]) -> bool:
    ran.append(True)
    return release.wait(DEADLINE)


def wait_and_count_pair(item: tuple[threading.Event, list[bool]]) -> bool:
    return wait_and_count(*item)


@pytest.mark.parametrize("stop", ["close", "drop"])
@pytest.mark.parametrize(
    ("how", "queued"),
    # Executor.map submits every item at once; imap keeps two chunks per worker in flight.
    [("map", 18), ("imap", 2)],
)
def test_a_map_stopped_early_cancels_what_is_queued(
    thread_pool: mp.Pool, stop: str, how: str, queued: int
) -> None:
    done, blocked = threading.Event(), threading.Event()
    done.set()
    ran: list[bool] = []
    items = [(done, ran)] + [(blocked, ran)] * 20
    try:
        if how == "map":
            results = thread_pool.map(wait_and_count, *zip(*items, strict=True), chunksize=1)
        else:
            results = thread_pool.imap(wait_and_count_pair, items, chunksize=1)
        assert next(results) is True
        # the next two items hold both workers, the others wait
        assert _wait_until(lambda: thread_pool.health().tasks_running == 2, timeout=DEADLINE)
        assert thread_pool.health().queue_depth == queued

        if stop == "close":
            results.close()  # type: ignore[attr-defined]
            with pytest.raises(StopIteration):
                next(results)
        else:
            del results
            gc.collect()
    finally:
        blocked.set()

    assert _wait_until(lambda: thread_pool.health().tasks_running == 0, timeout=DEADLINE)
    assert len(ran) == 3  # the waiting items never ran


def test_executor_map_starts_the_work_without_being_iterated(thread_pool: mp.Pool) -> None:
    ran: list[int] = []
    thread_pool.map(ran.append, range(10))  # the results are never asked for
    assert _wait_until(lambda: len(ran) == 10, timeout=DEADLINE)
    assert sorted(ran) == list(range(10))


# -- gather and as_completed ---------------------------------------------------------------


def test_gather_returns_results_in_order(pool: mp.Pool) -> None:
    handles = [pool.submit(square, n) for n in range(10)]

    assert mp.gather(handles) == [n * n for n in range(10)]


def test_gather_on_error_raise_raises_the_tasks_own_exception(pool: mp.Pool) -> None:
    handles = [
        pool.submit(square, 2),
        pool.submit(raise_value_error, "broken"),
        pool.submit(square, 3),
    ]

    with pytest.raises(ValueError, match="broken"):
        mp.gather(handles)


def test_gather_raises_the_first_failure(one_thread_pool: mp.Pool) -> None:
    # one worker: the KeyError task ends first
    handles = [
        one_thread_pool.submit(square, 1),
        one_thread_pool.submit(raise_key_error, "first"),
        one_thread_pool.submit(raise_value_error, "second"),
    ]

    with pytest.raises(KeyError, match="first"):
        mp.gather(handles, on_error="raise")


def test_gather_on_error_skip(pool: mp.Pool) -> None:
    handles = [pool.submit(fail_on_multiples_of_three, n) for n in range(7)]

    assert mp.gather(handles, on_error="skip") == [10, 20, 40, 50]


def test_gather_on_error_return(pool: mp.Pool) -> None:
    handles = [pool.submit(fail_on_multiples_of_three, n) for n in range(5)]

    results = mp.gather(handles, on_error="return")

    assert [type(r) for r in results] == [ValueError, int, int, ValueError, int]
    assert str(results[3]) == "bad item 3"
    assert results[1:3] == [10, 20]


def test_gather_of_a_cancelled_task(one_thread_pool: mp.Pool) -> None:
    release = threading.Event()
    blocker = one_thread_pool.submit(wait_for, release)
    try:
        victim = one_thread_pool.submit(square, 5)
        assert victim.cancel()
    finally:
        release.set()

    results = mp.gather([blocker, victim], on_error="return")

    assert results[0] is True
    assert isinstance(results[1], mp.TaskCancelledError)
    with pytest.raises(mp.TaskCancelledError):
        mp.gather([blocker, victim])


def test_gather_timeout(one_thread_pool: mp.Pool) -> None:
    release = threading.Event()
    try:
        handle = one_thread_pool.submit(wait_for, release)
        for on_error in ("raise", "skip", "return"):
            with pytest.raises(TimeoutError):
                mp.gather([handle], on_error=on_error, timeout=0.05)  # type: ignore[arg-type]
    finally:
        release.set()
    assert handle.result(DEADLINE) is True


def test_as_completed_yields_every_handle_once(pool: mp.Pool) -> None:
    handles = [pool.submit(square, n) for n in range(12)]
    handles.append(pool.submit(raise_value_error, "in the mix"))

    seen = list(mp.as_completed(handles, timeout=DEADLINE))

    assert len(seen) == len(handles)
    assert set(seen) == set(handles)
    assert all(h.done() for h in seen)


def test_as_completed_yields_in_completion_order(thread_pool: mp.Pool) -> None:
    release = threading.Event()
    try:
        slow = thread_pool.submit(wait_for, release)
        fast = thread_pool.submit(square, 2)
        iterator = mp.as_completed([slow, fast], timeout=DEADLINE)
        assert next(iterator) is fast
    finally:
        release.set()
    assert next(iterator) is slow


def test_as_completed_timeout(thread_pool: mp.Pool) -> None:
    release = threading.Event()
    try:
        handle = thread_pool.submit(wait_for, release)
        with pytest.raises(TimeoutError):
            list(mp.as_completed([handle], timeout=0.05))
    finally:
        release.set()
    assert handle.result(DEADLINE) is True


# -- Pool.map -------------------------------------------------------------------------------


def test_pool_map_with_several_iterables(pool: mp.Pool) -> None:
    assert list(pool.map(add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]
    assert list(pool.map(pow, [2, 3, 4], [5, 2, 3])) == [32, 9, 64]
    # like the built-in map: the shortest iterable ends it
    assert list(pool.map(add, [1, 2, 3], [10])) == [11]


def test_pool_map_with_a_chunksize(pool: mp.Pool) -> None:
    assert list(pool.map(square, range(30), chunksize=4)) == [x * x for x in range(30)]


def test_pool_map_raises_the_tasks_exception_when_reached(pool: mp.Pool) -> None:
    results = pool.map(fail_on_multiples_of_three, [1, 2, 3, 4])

    assert next(results) == 10
    assert next(results) == 20
    with pytest.raises(ValueError, match="bad item 3"):
        next(results)


def test_pool_map_timeout(thread_pool: mp.Pool) -> None:
    release = threading.Event()
    try:
        results = thread_pool.map(wait_for, [release, release], timeout=0.2)
        with pytest.raises(TimeoutError):
            list(results)
    finally:
        release.set()
    # the pool keeps working once the blocked tasks are released
    assert list(thread_pool.map(square, range(4), timeout=DEADLINE)) == [0, 1, 4, 9]


@pytest.mark.parametrize(("length", "workers"), [(1790, 2), (10, 2), (200, 3), (1_000_000, 8)])
def test_chunks_of_a_known_length_shrink_towards_the_end(length: int, workers: int) -> None:
    # Items of uneven cost end together only if the last chunks are small; the first
    # ones stay large, so tiny items still travel in few chunks.
    from makeparallel._mapping import _ChunkSizer

    sizer = _ChunkSizer(None, length, workers)
    sizes = []
    left = length
    while left:
        size = min(left, sizer.next_size())
        sizer.took(size)
        sizes.append(size)
        left -= size
    assert sum(sizes) == length
    assert sizes == sorted(sizes, reverse=True)
    if length >= workers * 32:
        assert sizes[-2] * 2 <= sizes[0]
    assert sizes[-2] >= length // (workers * 32)
    assert len(sizes) <= length // 10_000 + 20 * workers
