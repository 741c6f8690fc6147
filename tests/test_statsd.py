"""StatsD: what a StatsD server receives about a pool's tasks and workers."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import statsd

import makeparallel as mp
from makeparallel.observe import flush_events
from makeparallel.observe import statsd as mp_statsd

DEADLINE = 30.0


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


def fail_once(path: str) -> str:
    if not os.path.exists(path):
        Path(path).touch()
        raise OSError("the first attempt fails")
    return "second attempt"


def crash() -> None:
    os._exit(3)


class FakeClient:
    """Records each call as (method, metric name, value)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []

    def incr(self, stat: str, count: int = 1, rate: float = 1) -> None:
        self.calls.append(("incr", stat, count))

    def timing(self, stat: str, delta: float, rate: float = 1) -> None:
        self.calls.append(("timing", stat, delta))

    def gauge(self, stat: str, value: float, rate: float = 1, delta: bool = False) -> None:
        self.calls.append(("gauge", stat, value))

    def counters(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for method, stat, value in self.calls:
            if method == "incr":
                counts[stat] += int(value)
        return counts

    def values(self, method: str, stat: str) -> list[float]:
        return [v for m, s, v in self.calls if (m, s) == (method, stat)]


def test_counters_timings_and_gauges_of_a_pools_tasks(tmp_path: Path) -> None:
    client = FakeClient()
    with mp.Pool(workers=2, backend="thread", name="jobs") as pool:
        reporter = mp_statsd.attach(client, prefix="app", pool=pool)
        handles = [pool.submit(square, i) for i in range(3)]
        failed = pool.submit(fail, "no")
        retried = mp.parallel(fail_once, retry=mp.Retry(attempts=2, backoff=0), pool=pool)(
            str(tmp_path / "once")
        )
        mp.gather([*handles, retried], timeout=DEADLINE)
        failed.exception(timeout=DEADLINE)
    assert flush_events(DEADLINE)
    reporter.detach()
    counts = client.counters()
    assert counts["app.jobs.tasks.submitted"] == 5
    assert counts["app.jobs.tasks.started"] == 6  # the retried task started twice
    assert counts["app.jobs.tasks.succeeded"] == 4
    assert counts["app.jobs.tasks.failed"] == 1
    assert counts["app.jobs.tasks.retried"] == 1
    function = f"app.jobs.functions.{__name__}_square"
    assert counts[f"{function}.succeeded"] == 3
    assert counts[f"app.jobs.functions.{__name__}_fail.failed"] == 1
    assert len(client.values("timing", "app.jobs.tasks.wait")) == 6
    runs = client.values("timing", "app.jobs.tasks.run")
    assert len(runs) == 6  # every attempt
    assert all(ms >= 0 for ms in runs)
    assert len(client.values("timing", f"{function}.run")) == 3
    # at the end nothing waits or runs
    assert client.values("gauge", "app.jobs.tasks.queued")[-1] == 0
    assert client.values("gauge", "app.jobs.tasks.running")[-1] == 0
    assert max(client.values("gauge", "app.jobs.tasks.running")) >= 1


def test_pool_and_function_names_are_made_statsd_safe() -> None:
    test = "test_pool_and_function_names_are_made_statsd_safe__locals__"
    client = FakeClient()
    reporter = mp_statsd.attach(client)
    try:
        with mp.Pool(workers=1, backend="thread", name="my pool:1|a.b") as pool:
            pool.submit(lambda: 1).result(timeout=DEADLINE)
        assert flush_events(DEADLINE)
    finally:
        reporter.detach()
    names = {stat for _, stat, _ in client.calls if "my_pool" in stat}
    assert "makeparallel.my_pool_1_a_b.tasks.succeeded" in names
    functions = [n for n in names if n.startswith("makeparallel.my_pool_1_a_b.functions.")]
    assert {n.split(".")[-2] for n in functions} == {f"{__name__}_{test}_lambda_"}
    for name in names:
        assert not set(name) & set(":|@# "), name


def test_detach_stops_the_metrics() -> None:
    client = FakeClient()
    reporter = mp_statsd.attach(client)
    reporter.detach()
    reporter.detach()  # twice is harmless
    with mp.Pool(workers=1, backend="thread", name="quiet") as pool:
        pool.submit(square, 2).result(timeout=DEADLINE)
    assert flush_events(DEADLINE)
    assert not [c for c in client.calls if ".quiet." in c[1]]


def test_a_failing_client_is_logged_once_and_the_pool_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(FakeClient):
        def incr(self, stat: str, count: int = 1, rate: float = 1) -> None:
            raise OSError("the network is down")

    reporter = mp_statsd.attach(Broken())
    try:
        with (
            caplog.at_level(logging.ERROR, logger="makeparallel"),
            mp.Pool(workers=1, backend="thread", name="unlucky") as pool,
        ):
            assert [pool.submit(square, i).result(timeout=DEADLINE) for i in range(3)] == [0, 1, 4]
            assert flush_events(DEADLINE)
    finally:
        reporter.detach()
    failures = [r for r in caplog.records if "StatsD client" in r.getMessage()]
    assert len(failures) == 1


def test_worker_crashes_and_replacements_are_counted() -> None:
    client = FakeClient()
    with mp.Pool(workers=1, backend="process", name="crashy") as pool:
        reporter = mp_statsd.attach(client, pool=pool)
        pool.submit(crash).exception(timeout=DEADLINE)
        assert pool.submit(square, 3).result(timeout=DEADLINE) == 9  # on the replacement
    assert flush_events(DEADLINE)
    reporter.detach()
    counts = client.counters()
    assert counts["makeparallel.crashy.workers.crashed"] == 1
    assert counts["makeparallel.crashy.workers.started"] >= 1
    assert counts["makeparallel.crashy.tasks.failed"] == 1


def test_a_real_statsd_client_sends_udp_datagrams() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        client = statsd.StatsClient("127.0.0.1", port)
        reporter = mp_statsd.attach(client, prefix="udp")
        try:
            with mp.Pool(workers=1, backend="thread", name="wire") as pool:
                assert pool.submit(square, 4).result(timeout=DEADLINE) == 16
            assert flush_events(DEADLINE)
        finally:
            reporter.detach()
            client.close()
        # flush_events returned: every datagram was sent, and on loopback it has arrived
        server.setblocking(False)
        received: list[str] = []
        try:
            while True:
                received += server.recv(65536).decode().splitlines()
        except BlockingIOError:
            pass
    assert "udp.wire.tasks.succeeded:1|c" in received
    assert "udp.wire.tasks.submitted:1|c" in received
    assert any(line.startswith("udp.wire.tasks.run:") and line.endswith("|ms") for line in received)
    assert received[-1] == "udp.wire.tasks.running:0|g"


def test_without_a_client_the_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "statsd", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r'pip install "makeparallel\[statsd\]"'):
        mp_statsd.attach()


def test_a_client_without_the_statsd_methods_is_refused() -> None:
    client: Any = object()
    with pytest.raises(TypeError, match="incr, timing and gauge"):
        mp_statsd.attach(client)
