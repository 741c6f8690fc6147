"""Pool.health(): what a health endpoint would report."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

import makeparallel as mp
from polling import wait_until

DEADLINE = 30.0


def wait_for_file(path: str) -> int:
    while not os.path.exists(path):
        time.sleep(0.005)
    return 1


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fail_to_start() -> None:
    raise RuntimeError("cannot start")


def test_a_fresh_pool_is_healthy_and_reports_json(tmp_path: Path) -> None:
    with mp.Pool(workers=2, backend="process", name="api") as pool:
        wait_until(lambda: pool.health().workers_alive == 2, what="the workers to start")
        release = str(tmp_path / "go")
        handle = pool.submit(wait_for_file, release)
        wait_until(handle.running, what="the task to start")
        report = pool.health()
        assert report.healthy, report.reasons
        assert report.reasons == ()
        assert report.state == "running"
        assert (report.pool, report.backend) == ("api", "process")
        assert (report.workers_expected, report.workers_alive) == (2, 2)
        assert (report.workers_busy, report.workers_idle) == (1, 1)
        assert report.tasks_running == 1
        assert report.queue_depth == 0
        assert [t.task_id for t in report.longest_running] == [handle.task_id]
        assert report.longest_running[0].worker == handle.worker
        data = json.loads(json.dumps(report.to_dict()))
        assert data["healthy"] is True
        assert data["longest_running"][0]["name"] == "wait_for_file"
        Path(release).touch()
        assert handle.result(timeout=DEADLINE) == 1


def test_a_pool_whose_workers_keep_crashing_is_unhealthy() -> None:
    with mp.Pool(workers=2, backend="process") as pool:
        for _ in range(4):
            with pytest.raises(mp.WorkerCrashedError):
                pool.submit(die).result(timeout=DEADLINE)
        report = pool.health()
        assert report.crashes_last_minute >= 4
        assert report.restarts_last_minute >= 4
        assert not report.healthy
        assert any("crashed in the last minute" in reason for reason in report.reasons)


def test_a_pool_that_cannot_start_workers_is_unhealthy() -> None:
    pool = mp.Pool(workers=1, backend="process", initializer=fail_to_start)
    try:
        with pytest.raises(mp.TaskError):
            pool.submit(abs, -1).result(timeout=DEADLINE)
        report = pool.health()
        assert not report.healthy
        assert any("cannot run tasks" in reason for reason in report.reasons)
    finally:
        pool.shutdown(timeout=5)


def test_a_closed_pool_says_so() -> None:
    pool = mp.Pool(workers=1, backend="thread")
    assert pool.health().healthy
    pool.shutdown()
    report = pool.health()
    assert report.state == "closed"
    assert not report.healthy
    assert report.reasons == ("the pool is closed",)
