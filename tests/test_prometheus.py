"""Prometheus: what a scrape of makeparallel's metrics shows, and the /metrics endpoint."""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import makeparallel as mp
from makeparallel.observe import flush_events
from makeparallel.observe import prometheus as mprom
from polling import wait_until

DEADLINE = 30.0

Labels = frozenset[tuple[str, str]]


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


def blocked(gate: threading.Event) -> None:
    gate.wait(DEADLINE)


def hang() -> None:
    threading.Event().wait()


def crash() -> None:
    os._exit(3)


def fail_once(path: str) -> str:
    if not os.path.exists(path):
        Path(path).touch()
        raise OSError("the first attempt fails")
    return "second attempt"


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    mprom.register(registry)
    yield registry
    mprom.unregister(registry)


def scrape(registry: CollectorRegistry, pool: str | None = None) -> dict[str, list[Sample]]:
    """The exposition text parsed back: samples by family name (of ``pool`` if given)."""
    text = generate_latest(registry).decode()
    return {
        family.name: [s for s in family.samples if pool is None or s.labels.get("pool") == pool]
        for family in text_string_to_metric_families(text)
    }


def values(samples: list[Sample], suffix: str = "", **fixed: str) -> dict[Labels, float]:
    """Sample values by their labels; only samples named ``*suffix`` that have ``fixed`` labels.

    The labels in ``fixed`` are left out of the keys.
    """
    return {
        frozenset((k, v) for k, v in s.labels.items() if k not in fixed): s.value
        for s in samples
        if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in fixed.items())
    }


def one(samples: list[Sample], suffix: str = "", **labels: str) -> float:
    found = [
        s.value
        for s in samples
        if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, f"{len(found)} samples with {labels}"
    return found[0]


def test_a_scrape_shows_counts_outcomes_and_durations_of_a_pool(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    name = "prom-mixed"
    gate = threading.Event()
    with mp.Pool(workers=2, backend="thread", name=name) as pool:
        blockers = [pool.submit(blocked, gate) for _ in range(2)]
        try:
            wait_until(lambda: all(h.running() for h in blockers), what="both workers busy")
            queued = pool.submit(square, 0)
            busy = scrape(registry, name)
            assert one(busy["makeparallel_queue_depth"]) == 1
            assert one(busy["makeparallel_workers"], state="busy") == 2
            assert one(busy["makeparallel_workers"], state="idle") == 0
            assert queued.cancel()
        finally:
            gate.set()
        squares = [pool.submit(square, i) for i in range(4)]
        failures = [pool.submit(fail, str(i)) for i in range(3)]
        retried = mp.parallel(fail_once, retry=mp.Retry(attempts=2, backoff=0), pool=pool)(
            str(tmp_path / "once")
        )
        mp.gather([*blockers, *squares, retried], timeout=DEADLINE)
        for handle in failures:
            assert isinstance(handle.exception(timeout=DEADLINE), ValueError)
        assert flush_events(DEADLINE)
        families = scrape(registry, name)
        busy_seconds = pool.metrics().busy_seconds

    fn = {f: f"{__name__}.{f}" for f in ("square", "fail", "fail_once", "blocked")}
    submitted = families["makeparallel_tasks_submitted"]
    assert values(submitted, "_total") == {
        frozenset({("pool", name), ("function", fn["square"])}): 5,  # the cancelled one too
        frozenset({("pool", name), ("function", fn["fail"])}): 3,
        frozenset({("pool", name), ("function", fn["fail_once"])}): 1,
        frozenset({("pool", name), ("function", fn["blocked"])}): 2,
    }
    finished = families["makeparallel_tasks_finished"]
    assert {s.labels["outcome"] for s in finished} == {
        "succeeded",
        "failed",
        "cancelled",
        "timed_out",
    }
    by_outcome = {
        outcome: values(finished, "_total", outcome=outcome)
        for outcome in ("succeeded", "failed", "cancelled")
    }
    assert by_outcome["succeeded"][frozenset({("pool", name), ("function", fn["square"])})] == 4
    assert by_outcome["cancelled"][frozenset({("pool", name), ("function", fn["square"])})] == 1
    assert by_outcome["failed"][frozenset({("pool", name), ("function", fn["fail"])})] == 3
    assert by_outcome["succeeded"][frozenset({("pool", name), ("function", fn["fail_once"])})] == 1
    assert one(families["makeparallel_task_retries"], function=fn["fail_once"]) == 1
    assert one(families["makeparallel_task_retries"], function=fn["square"]) == 0

    run = families["makeparallel_task_run_seconds"]
    # every attempt that ran: both of fail_once's, none of the cancelled square
    assert one(run, "_count", function=fn["fail_once"]) == 2
    assert one(run, "_count", function=fn["square"]) == 4
    for function in fn.values():
        buckets = values(run, "_bucket", function=function)
        ordered = sorted(buckets.items(), key=lambda kv: float(dict(kv[0])["le"]))
        counts = [count for _, count in ordered]
        assert counts == sorted(counts), "buckets are cumulative"
        assert dict(ordered[-1][0])["le"] == "+Inf"
        assert counts[-1] == one(run, "_count", function=function)
    # the run histogram and the busy-seconds counter add up the same durations
    run_sum = sum(s.value for s in run if s.name.endswith("_sum"))
    assert run_sum == pytest.approx(busy_seconds)
    assert one(families["makeparallel_worker_busy_seconds"], "_total") == pytest.approx(
        busy_seconds
    )
    wait = families["makeparallel_task_wait_seconds"]
    assert one(wait, "_count", function=fn["fail_once"]) == 2  # each attempt waited
    assert one(wait, "_count", function=fn["blocked"]) == 2
    assert one(families["makeparallel_queue_depth"]) == 0


def test_series_carry_only_the_documented_labels(registry: CollectorRegistry) -> None:
    with mp.Pool(workers=1, backend="thread", name="prom-labels") as pool:
        pool.submit(square, 3).result(timeout=DEADLINE)
        assert flush_events(DEADLINE)
        families = scrape(registry, "prom-labels")
    expected = {
        "makeparallel_tasks_submitted": ("counter", {"pool", "function"}),
        "makeparallel_tasks_finished": ("counter", {"pool", "function", "outcome"}),
        "makeparallel_task_retries": ("counter", {"pool", "function"}),
        "makeparallel_task_wait_seconds": ("histogram", {"pool", "function"}),
        "makeparallel_task_run_seconds": ("histogram", {"pool", "function"}),
        "makeparallel_queue_depth": ("gauge", {"pool"}),
        "makeparallel_workers": ("gauge", {"pool", "state"}),
        "makeparallel_worker_busy_seconds": ("counter", {"pool"}),
        "makeparallel_worker_restarts": ("counter", {"pool", "reason"}),
    }
    text = generate_latest(registry).decode()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    for family, (kind, labels) in expected.items():
        assert types[family] == kind
        assert families[family], f"{family} has no series for the pool"
        for sample in families[family]:
            assert set(sample.labels) - {"le"} == labels, sample
    assert types["makeparallel_circuit_breaker_state"] == "gauge"


def test_worker_replacements_are_counted_by_reason(registry: CollectorRegistry) -> None:
    name = "prom-restarts"
    with mp.Pool(workers=1, backend="process", name=name) as pool:
        crashed = pool.submit(crash)
        assert isinstance(crashed.exception(timeout=DEADLINE), mp.WorkerCrashedError)
        timed = mp.parallel(hang, timeout=0.2, pool=pool)()
        assert isinstance(timed.exception(timeout=DEADLINE), mp.TaskTimeoutError)
        # (a replacement is counted as it starts, soon after the worker it replaces ends)
        wait_until(lambda: pool.metrics().worker_restarts == 2, what="two replacements")
        restarts = scrape(registry, name)["makeparallel_worker_restarts"]
    assert one(restarts, "_total", reason="crashed") == 1
    assert one(restarts, "_total", reason="other") == 1


def test_circuit_breaker_state_follows_the_breaker(registry: CollectorRegistry) -> None:
    breaker = mp.CircuitBreaker(failure_threshold=2, reset_timeout=60, name="prom-db")
    quiet = mp.CircuitBreaker(name="prom-quiet")

    def state(of: mp.CircuitBreaker) -> float:
        return one(scrape(registry)["makeparallel_circuit_breaker_state"], breaker=of.name)

    assert state(breaker) == mprom.BREAKER_STATES[mp.CircuitState.CLOSED]
    with mp.Pool(workers=1, backend="thread", name="prom-breaker") as pool:
        failing = mp.parallel(fail, circuit_breaker=breaker, pool=pool)
        for i in range(2):
            assert isinstance(failing(str(i)).exception(timeout=DEADLINE), ValueError)
    assert breaker.state is mp.CircuitState.OPEN
    assert state(breaker) == mprom.BREAKER_STATES[mp.CircuitState.OPEN] == 2
    assert state(quiet) == mprom.BREAKER_STATES[mp.CircuitState.CLOSED] == 0


def make_functions(count: int) -> list[Callable[[], int]]:
    """``count`` functions with their own code objects and names, as real programs have."""
    namespace: dict[str, Any] = {"__name__": "generated"}
    exec("\n".join(f"def f{i}():\n    return {i}" for i in range(count)), namespace)
    return [namespace[f"f{i}"] for i in range(count)]


def test_a_thousand_functions_give_at_most_101_series_a_metric(
    registry: CollectorRegistry,
) -> None:
    name = "prom-many"
    functions = make_functions(1000)
    with mp.Pool(workers=2, backend="thread", name=name) as pool:
        handles = [pool.submit(fn) for fn in functions]
        assert sorted(mp.gather(handles, timeout=DEADLINE)) == list(range(1000))
        assert flush_events(DEADLINE)
        families = scrape(registry, name)
    for family, sample in (
        ("makeparallel_tasks_submitted", "_total"),
        ("makeparallel_task_retries", "_total"),
        ("makeparallel_task_run_seconds", "_count"),
        ("makeparallel_task_wait_seconds", "_count"),
    ):
        series = values(families[family], sample)
        labels = {dict(key)["function"] for key in series}
        assert len(series) <= 101, family
        assert "other" in labels, family
        if family != "makeparallel_task_retries":
            assert sum(series.values()) == 1000, family  # nothing lost, the rest is "other"
    finished = values(families["makeparallel_tasks_finished"], "_total", outcome="succeeded")
    assert len(finished) <= 101
    assert sum(finished.values()) == 1000


def test_registering_twice_exposes_each_series_once(registry: CollectorRegistry) -> None:
    with mp.Pool(workers=1, backend="thread", name="prom-twice") as pool:
        assert mprom.register(registry) is mprom.register(registry)
        pool.submit(square, 2).result(timeout=DEADLINE)
        submitted = scrape(registry, "prom-twice")["makeparallel_tasks_submitted"]
    assert [s.value for s in submitted] == [1]


def test_a_registry_with_clashing_names_gets_a_clear_error() -> None:
    registry = CollectorRegistry()
    registry.register(mprom.PoolCollector())  # put there by hand, not by register()
    with pytest.raises(ValueError, match="makeparallel"):
        mprom.register(registry)


def test_unregister_takes_the_series_out(registry: CollectorRegistry) -> None:
    mprom.unregister(registry)
    assert not any(name.startswith("makeparallel_") for name in scrape(registry))
    mprom.register(registry)  # (the fixture unregisters it again)


def test_serve_exposes_metrics_over_http_on_localhost(registry: CollectorRegistry) -> None:
    server = mprom.serve(0, registry=registry)
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        with mp.Pool(workers=1, backend="thread", name="prom-http") as pool:
            pool.submit(square, 2).result(timeout=DEADLINE)
            with urllib.request.urlopen(server.url, timeout=DEADLINE) as response:
                assert response.status == 200
                text = response.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        submitted = [
            s
            for s in families["makeparallel_tasks_submitted"].samples
            if s.labels["pool"] == "prom-http"
        ]
        assert [s.value for s in submitted] == [1]
    finally:
        server.close()


def test_a_port_in_use_gives_an_error_naming_it(registry: CollectorRegistry) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"port {port} is in use"):
            mprom.serve(port, registry=registry)


def test_without_the_extra_the_import_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    try:
        with pytest.raises(ImportError, match=r'pip install "makeparallel\[prometheus\]"'):
            importlib.reload(mprom)
    finally:
        monkeypatch.undo()
        importlib.reload(mprom)
