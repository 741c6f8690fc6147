"""memory_limit: a worker over its limit is recycled, or its task is stopped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import makeparallel as mp
from makeparallel._memory import parse_size

DEADLINE = 30.0
_hoard: list[bytearray] = []


def grow_and_return(megabytes: int) -> int:
    _hoard.append(bytearray(megabytes * 1024 * 1024))  # kept: the worker stays big
    return os.getpid()


def grow_and_wait(megabytes: int, path: str) -> int:
    _hoard.append(bytearray(megabytes * 1024 * 1024))
    while not os.path.exists(path):
        time.sleep(0.005)
    return os.getpid()


def test_a_worker_over_the_limit_is_recycled_after_its_task() -> None:
    with mp.Pool(workers=1, backend="process", memory_limit="150MB") as pool:
        small = pool.submit(grow_and_return, 1).result(DEADLINE)
        assert pool.submit(grow_and_return, 1).result(DEADLINE) == small  # under the limit
        big = pool.submit(grow_and_return, 300).result(DEADLINE)  # the task itself succeeds
        assert big == small
        after = pool.submit(grow_and_return, 1).result(DEADLINE)
        assert after != big  # the bloated worker was replaced


def test_kill_stops_the_task_at_once(tmp_path: Path) -> None:
    with mp.Pool(
        workers=1, backend="process", memory_limit="150MB", memory_limit_action="kill"
    ) as pool:
        handle = pool.submit(grow_and_wait, 300, str(tmp_path / "never"))
        with pytest.raises(mp.MemoryLimitError, match="memory limit") as info:
            handle.result(timeout=DEADLINE)
        assert isinstance(info.value, mp.TaskError)
        assert handle.state == "failed"
        assert pool.submit(grow_and_return, 1).result(DEADLINE)  # a new worker serves


def test_kill_stops_a_task_sent_after_quick_ones(tmp_path: Path) -> None:
    # Quick tasks make the pool send the next one from the caller's thread, while the
    # I/O thread, which checks memory, sleeps with nothing to time.
    with mp.Pool(
        workers=1, backend="process", memory_limit="150MB", memory_limit_action="kill"
    ) as pool:
        for _ in range(20):
            pool.submit(grow_and_return, 0).result(DEADLINE)
        handle = pool.submit(grow_and_wait, 300, str(tmp_path / "never"))
        with pytest.raises(mp.MemoryLimitError, match="memory limit"):
            handle.result(timeout=DEADLINE)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MB", 512 * 10**6), ("2GiB", 2 * 1024**3), ("1.5 GB", 1_500_000_000), (4096, 4096)],
)
def test_sizes_are_parsed(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"memory_limit": "lots"}, ValueError, "is not a size"),
        ({"memory_limit": "2 parsecs"}, ValueError, "is not a size"),
        ({"memory_limit": 0}, ValueError, "more than 0"),
        ({"memory_limit": 1.5}, TypeError, "memory_limit"),
        ({"memory_limit": "1GB", "memory_limit_action": "explode"}, ValueError, "recycle"),
        ({"memory_limit": "1GB", "backend": "thread"}, ValueError, "backend='process'"),
    ],
)
def test_bad_memory_limits_are_refused(kwargs: dict[str, object], error: type, match: str) -> None:
    kwargs.setdefault("backend", "process")
    with pytest.raises(error, match=match):
        mp.Pool(workers=1, **kwargs)  # type: ignore[arg-type]
