"""Observability: metrics, the task table, and task events for listeners."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import makeparallel as mp
from makeparallel.observe import flush_events
from polling import wait_for_file, wait_until

DEADLINE = 30.0


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


def hang() -> None:
    threading.Event().wait()


def crash() -> None:
    os._exit(3)


def fail_once(path: str) -> str:
    if not os.path.exists(path):
        Path(path).touch()
        raise OSError("the first attempt fails")
    return "second attempt"


def finished_by(events: list[mp.TaskEvent], task_id: int) -> list[str]:
    return [e.kind for e in events if e.task_id == task_id]


def test_counts_are_exact_after_a_mixed_run(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    with mp.Pool(workers=2, backend="process", name="mixed") as pool:
        blockers = [pool.submit(wait_for_file, gate) for _ in range(2)]
        wait_until(lambda: all(h.running() for h in blockers), what="both workers busy")
        queued = pool.submit(square, 1)
        assert queued.cancel()
        Path(gate).touch()
        handles = [pool.submit(square, i) for i in range(5)]
        failures = [pool.submit(fail, str(i)) for i in range(2)]
        timed = mp.parallel(hang, timeout=0.5, pool=pool)()
        retried = mp.parallel(fail_once, retry=mp.Retry(attempts=2, backoff=0), pool=pool)(
            str(tmp_path / "once")
        )
        crashed = pool.submit(crash)
        mp.gather([*blockers, *handles, retried], timeout=DEADLINE)
        for handle in (*failures, timed, crashed):
            handle.exception(timeout=DEADLINE)
        # (a replacement is counted as it starts, soon after the worker it replaces ends)
        wait_until(lambda: pool.metrics().worker_restarts == 2, what="two replacements")
        metrics = pool.metrics()
    assert isinstance(crashed.exception(), mp.WorkerCrashedError)
    assert isinstance(timed.exception(), mp.TaskTimeoutError)
    assert (metrics.submitted, metrics.completed, metrics.failed) == (13, 8, 3)
    assert (metrics.cancelled, metrics.timed_out, metrics.retried) == (1, 1, 1)
    assert (metrics.running, metrics.queued) == (0, 0)
    assert metrics.worker_crashes == 1
    assert metrics.run.count == 13  # every attempt that started (the cancelled one did not)
    assert 0 < metrics.run.p50 <= metrics.run.p95 <= metrics.run.p99 <= metrics.run.max
    assert metrics.busy_seconds >= 0.5  # the timed-out task ran half a second at least
    assert metrics.by_function[f"{__name__}.square"].completed == 5
    assert metrics.by_function[f"{__name__}.fail"].failed == 2
    assert metrics.by_function[f"{__name__}.fail_once"].retried == 1
    json.dumps(metrics.to_dict())  # plain JSON data


def test_metrics_count_at_most_a_hundred_functions_and_the_rest_as_other() -> None:
    functions: dict[str, Any] = {}
    for i in range(150):
        exec(f"def f{i}():\n    return {i}", functions)  # a new function, and code, each
    with mp.Pool(workers=2, backend="thread") as pool:
        mp.gather([pool.submit(functions[f"f{i}"]) for i in range(150)], timeout=DEADLINE)
        by_function = pool.metrics().by_function
    assert len(by_function) == 101
    assert by_function["other"].completed == 50
    assert sum(f.completed for f in by_function.values()) == 150


def test_a_listener_sees_each_step_of_each_task() -> None:
    events: list[mp.TaskEvent] = []
    with mp.Pool(workers=1, backend="process", name="heard") as pool:
        pool.add_listener(events.append)
        ok = pool.submit(square, 3)
        bad = pool.submit(fail, "no")
        ok.result(timeout=DEADLINE)
        bad.exception(timeout=DEADLINE)
        pid = pool.workers_info()[0]["pid"]
    assert flush_events(DEADLINE)
    assert finished_by(events, ok.task_id) == ["submitted", "started", "finished"]
    done = next(e for e in events if e.task_id == ok.task_id and e.kind == "finished")
    assert (done.pool, done.name, done.function) == ("heard", "square", f"{__name__}.square")
    assert done.outcome == "succeeded"
    assert done.exception_type is None
    assert done.worker_pid == pid
    assert done.attempt == 1
    assert done.run_seconds is not None
    assert done.run_seconds >= 0
    failed = next(e for e in events if e.task_id == bad.task_id and e.kind == "finished")
    assert (failed.outcome, failed.exception_type) == ("failed", "ValueError")
    started = next(e for e in events if e.task_id == bad.task_id and e.kind == "started")
    assert started.wait_seconds is not None
    assert started.wait_seconds >= 0


def test_listeners_hear_retries_crashes_and_new_workers(tmp_path: Path) -> None:
    events: list[mp.TaskEvent] = []
    mp.add_listener(events.append)
    try:
        with mp.Pool(workers=1, backend="process") as pool:
            wait_until(lambda: len(pool.workers_info()) == 1, what="a worker")
            first = pool.workers_info()[0]["pid"]
            retry = mp.Retry(attempts=2, backoff=0)
            retried = mp.parallel(fail_once, retry=retry, pool=pool)(str(tmp_path / "x"))
            assert retried.result(timeout=DEADLINE) == "second attempt"
            crashed = pool.submit(crash)
            crashed.exception(timeout=DEADLINE)
            pool.submit(square, 2).result(timeout=DEADLINE)
    finally:
        mp.remove_listener(events.append)
    assert flush_events(DEADLINE)
    steps = finished_by(events, retried.task_id)
    assert steps == ["submitted", "started", "retried", "started", "finished"]
    exits = [e for e in events if e.kind == "worker_exited"]
    assert (exits[0].worker_pid, exits[0].outcome) == (first, "crashed")
    starts = [e.worker_pid for e in events if e.kind == "worker_started"]
    assert starts[0] == first
    assert starts[-1] != first


def test_a_failing_listener_is_logged_once_and_harms_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: mp.TaskEvent) -> None:
        raise RuntimeError("listener bug")

    heard: list[mp.TaskEvent] = []
    with mp.Pool(workers=1, backend="thread") as pool:
        pool.add_listener(broken)
        pool.add_listener(heard.append)
        with caplog.at_level(logging.ERROR, logger="makeparallel"):
            assert mp.gather([pool.submit(square, i) for i in range(5)], timeout=DEADLINE) == [
                0,
                1,
                4,
                9,
                16,
            ]
            assert flush_events(DEADLINE)
    assert len([r for r in caplog.records if "event listener" in r.getMessage()]) == 1
    assert len([e for e in heard if e.kind == "finished"]) == 5


def test_a_listener_must_be_callable() -> None:
    with mp.Pool(workers=1, backend="thread") as pool, pytest.raises(TypeError, match="callable"):
        pool.add_listener("print")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        mp.add_listener(None)  # type: ignore[arg-type]


def test_the_task_table_lists_running_then_queued_tasks(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    with mp.Pool(workers=1, backend="process") as pool:
        running = pool.submit(wait_for_file, gate)
        # (with a timeout it is never sent ahead to the busy worker: it waits in the pool)
        later = mp.parallel(square, name="later", metadata={"user": 7}, timeout=30, pool=pool)
        queued = later(4)
        wait_until(running.running, what="the first task to start")
        table = pool.tasks()
        Path(gate).touch()
        assert queued.result(timeout=DEADLINE) == 16
        assert pool.tasks() == []
    assert [t.task_id for t in table] == [running.task_id, queued.task_id]
    first, second = table
    assert (first.state, first.function) == ("running", "polling.wait_for_file")
    assert first.worker is not None
    assert first.elapsed is not None
    assert first.attempts == 1
    assert (second.state, second.name, second.worker, second.elapsed) == (
        "pending",
        "later",
        None,
        None,
    )
    assert second.metadata == {"user": 7}
    json.dumps([t.to_dict() for t in table])


def test_a_task_cancelled_while_queued_leaves_the_task_table_at_once(tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    with mp.Pool(workers=1, backend="thread") as pool:
        running = pool.submit(wait_for_file, gate)
        queued = pool.submit(square, 3)
        wait_until(running.running, what="the first task to start")
        assert queued.cancel()
        listed = [t.task_id for t in pool.tasks()]
        Path(gate).touch()
    assert listed == [running.task_id]


def test_mp_metrics_adds_up_every_pool() -> None:
    with (
        mp.Pool(workers=1, backend="thread") as one,
        mp.Pool(workers=1, backend="thread") as two,
    ):
        before = mp.metrics().completed
        mp.gather([one.submit(square, 1), two.submit(square, 2), two.submit(square, 3)])
        assert one.metrics().completed == 1
        assert two.metrics().completed == 2
        assert mp.metrics().completed - before == 3


def spin(seconds: float) -> float:
    end = __import__("time").process_time() + seconds
    while __import__("time").process_time() < end:
        pass
    return seconds


def test_workers_info_and_health_show_each_workers_memory_and_cpu() -> None:
    with mp.Pool(workers=2, backend="process") as pool:
        wait_until(lambda: len(pool.workers_info()) == 2, what="two workers")
        handle = pool.submit(spin, 0.5)
        wait_until(handle.running, what="the task to start")
        pool.workers_info()  # the CPU figures count from here
        handle.result(timeout=DEADLINE)
        info = {w["pid"]: w for w in pool.workers_info()}
        health = pool.health()
    assert all(w["rss_bytes"] > 1_000_000 for w in info.values())
    busy = max(info.values(), key=lambda w: w["tasks_done"])
    assert busy["tasks_done"] == 1
    assert busy["cpu_percent"] > 10  # it spun for most of the interval (one core is 100)
    assert {w.pid for w in health.workers} == set(info)
    assert all(w.rss_bytes is not None and w.rss_bytes > 1_000_000 for w in health.workers)
    json.dumps(health.to_dict())


def test_a_map_run_in_the_callers_thread_leaves_no_cancelled_chunks() -> None:
    # Items far cheaper than their trip: the map measures a few chunks, then takes the
    # rest back to run them here. Those chunks were not cancelled by anyone.
    with mp.Pool(workers=2, backend="process") as pool:
        assert list(pool.map(abs, range(-50_000, 0))) == list(range(50_000, 0, -1))
        metrics = pool.metrics()
    assert metrics.cancelled == 0
    assert metrics.submitted == metrics.completed
