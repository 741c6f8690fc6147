"""Pools that grow under load, shrink when idle, and resize at run time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import makeparallel as mp
from polling import wait_until

DEADLINE = 30.0


def wait_for_file(path: str) -> int:
    while not os.path.exists(path):
        time.sleep(0.005)
    return os.getpid()


def alive(pool: mp.Pool) -> int:
    return pool.health().workers_alive


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_a_pool_grows_under_load_and_shrinks_when_idle(backend: str, tmp_path: Path) -> None:
    release = str(tmp_path / "go")
    with mp.Pool(backend=backend, min_workers=1, max_workers=3, idle_timeout=0.3) as pool:
        wait_until(lambda: alive(pool) == 1, what="the first worker")
        assert pool.workers == 3
        handles = [pool.submit(wait_for_file, release) for _ in range(3)]
        wait_until(
            lambda: all(h.running() for h in handles) and alive(pool) == 3,
            what="three workers to run",
        )
        extra = pool.submit(wait_for_file, release)
        # never more than max_workers (the extra task waits in the queue, or behind
        # another task on a busy worker when tasks look quick enough to send ahead)
        assert alive(pool) == 3
        assert pool.health().workers_starting == 0
        Path(release).touch()
        assert len({h.result(DEADLINE) for h in [*handles, extra]}) <= 3
        wait_until(lambda: alive(pool) == 1, what="idle workers to retire")
        assert pool.health().healthy
        assert pool.submit(wait_for_file, release).result(DEADLINE)  # still serving


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_resize_at_run_time(backend: str, tmp_path: Path) -> None:
    release = str(tmp_path / "go")
    with mp.Pool(workers=2, backend=backend) as pool:
        wait_until(lambda: alive(pool) == 2, what="two workers")
        pool.resize(3)
        assert pool.workers == 3
        handles = [pool.submit(wait_for_file, release) for _ in range(3)]
        wait_until(lambda: all(h.running() for h in handles), what="three tasks to run at once")
        pool.resize(1)
        Path(release).touch()
        assert all(h.result(DEADLINE) for h in handles)  # shrinking loses no running task
        wait_until(lambda: alive(pool) == 1, what="the pool to shrink")
        assert pool.health().workers_expected == 1
        assert pool.health().healthy
        assert pool.submit(wait_for_file, release).result(DEADLINE)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"min_workers": 4, "max_workers": 2}, ValueError, "must not exceed"),
        ({"workers": 2, "max_workers": 4}, ValueError, "not both"),
        ({"min_workers": 0, "max_workers": 2}, ValueError, "min_workers must be >= 1"),
        ({"workers": 2, "idle_timeout": 5}, ValueError, "min_workers and max_workers"),
        ({"min_workers": 1, "max_workers": 2, "idle_timeout": -1}, ValueError, "idle_timeout"),
    ],
)
def test_bad_sizes_are_refused(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        mp.Pool(backend="thread", **kwargs)  # type: ignore[arg-type]


def test_resize_checks_its_argument() -> None:
    with mp.Pool(workers=1, backend="thread") as pool:
        with pytest.raises(ValueError, match="workers must be >= 1"):
            pool.resize(0)
        with pytest.raises(TypeError):
            pool.resize(None)  # type: ignore[arg-type]
    with mp.Pool(backend="serial") as serial, pytest.raises(ValueError, match="no workers"):
        serial.resize(2)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.resize(2)
