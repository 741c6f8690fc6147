"""OpenTelemetry: every task is a span under the span that submitted it."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import makeparallel as mp
from makeparallel.observe import flush_events, otel
from polling import wait_until

DEADLINE = 30.0

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("tests")


def square(x: int) -> int:
    return x * x


def fail(message: str) -> None:
    raise ValueError(message)


def seen_from_the_task() -> tuple[int, int, str | None]:
    """The trace id and span id current inside the task, and the baggage it got."""
    current = trace.get_current_span().get_span_context()
    user = baggage.get_baggage("user")
    return current.trace_id, current.span_id, None if user is None else str(user)


def with_a_span_inside() -> int:
    with tracer.start_as_current_span("inside the task"):
        return 1


@pytest.fixture
def instrumented() -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    otel.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        otel.uninstrument()
        flush_events(DEADLINE)


def task_spans(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith("makeparallel ")]


@pytest.mark.parametrize("backend", ["thread", "serial", "process"])
def test_a_task_span_is_a_child_of_the_submitters_span(
    instrumented: InMemorySpanExporter, backend: str
) -> None:
    with mp.Pool(workers=1, backend=backend, name="traced") as pool:
        with tracer.start_as_current_span("request") as request:
            handle = pool.submit(square, 7)
        assert handle.result(timeout=DEADLINE) == 49
    assert flush_events(DEADLINE)
    [span] = task_spans(instrumented.get_finished_spans())
    assert span.name == "makeparallel square"
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context is not None
    assert span.context.trace_id == request.get_span_context().trace_id
    attributes = span.attributes or {}
    assert attributes["makeparallel.task.id"] == handle.task_id
    assert attributes["makeparallel.task.name"] == "square"
    assert attributes["makeparallel.function"] == f"{__name__}.square"
    assert attributes["makeparallel.pool"] == "traced"
    assert attributes["makeparallel.attempt"] == 1
    assert attributes["makeparallel.outcome"] == "succeeded"
    if backend == "process":
        assert attributes["makeparallel.worker.pid"] == int(handle.worker.split()[1])
    assert span.status.status_code is StatusCode.UNSET
    assert [e.name for e in span.events] == ["started"]


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_the_task_runs_in_its_span_context_in_the_worker(
    instrumented: InMemorySpanExporter, backend: str
) -> None:
    with mp.Pool(workers=1, backend=backend, start="spawn") as pool:
        with tracer.start_as_current_span("request") as request:
            token = otel_context.attach(baggage.set_baggage("user", "ada"))
            try:
                handle = pool.submit(seen_from_the_task)
            finally:
                otel_context.detach(token)
        trace_id, span_id, user = handle.result(timeout=DEADLINE)
    assert flush_events(DEADLINE)
    [span] = task_spans(instrumented.get_finished_spans())
    assert span.context is not None
    assert trace_id == request.get_span_context().trace_id  # the same trace
    assert span_id == span.context.span_id  # its parent: the task span
    assert user == "ada"


def test_spans_a_thread_task_starts_are_children_of_its_span(
    instrumented: InMemorySpanExporter,
) -> None:
    with mp.Pool(workers=1, backend="thread") as pool:
        with tracer.start_as_current_span("request"):
            handle = pool.submit(with_a_span_inside)
        handle.result(timeout=DEADLINE)
    assert flush_events(DEADLINE)
    spans = instrumented.get_finished_spans()
    [task] = task_spans(spans)
    [inside] = [s for s in spans if s.name == "inside the task"]
    assert task.context is not None
    assert inside.parent is not None
    assert inside.parent.span_id == task.context.span_id


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_failure_is_recorded_on_the_span(
    instrumented: InMemorySpanExporter, backend: str
) -> None:
    with mp.Pool(workers=1, backend=backend) as pool:
        handle = pool.submit(fail, "bad input")
        assert isinstance(handle.exception(timeout=DEADLINE), ValueError)
    assert flush_events(DEADLINE)
    [span] = task_spans(instrumented.get_finished_spans())
    assert span.parent is None  # submitted outside any span: a trace of its own
    assert span.status.status_code is StatusCode.ERROR
    assert "ValueError: bad input" in (span.status.description or "")
    assert (span.attributes or {})["makeparallel.outcome"] == "failed"
    [recorded] = [e for e in span.events if e.name == "exception"]
    attributes: Any = recorded.attributes
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "bad input"
    assert "fail" in attributes["exception.stacktrace"]


def test_retries_and_timeouts_show_on_the_span(instrumented: InMemorySpanExporter) -> None:

    release = threading.Event()
    with mp.Pool(workers=1, backend="thread") as pool:
        retry = mp.Retry(attempts=2, backoff=0)
        failing = mp.parallel(fail, retry=retry, pool=pool)("again")
        assert isinstance(failing.exception(timeout=DEADLINE), ValueError)
        timed = mp.parallel(release.wait, timeout=0.05, pool=pool)()
        assert isinstance(timed.exception(timeout=DEADLINE), mp.TaskTimeoutError)
        release.set()
    assert flush_events(DEADLINE)
    by_id = {(s.attributes or {})["makeparallel.task.id"]: s for s in exporter.get_finished_spans()}
    retried = by_id[failing.task_id]
    assert [e.name for e in retried.events] == ["started", "retried", "started", "exception"]
    assert (retried.attributes or {})["makeparallel.attempt"] == 2
    timed_out = by_id[timed.task_id]
    assert (timed_out.attributes or {})["makeparallel.outcome"] == "timed_out"
    assert timed_out.status.status_code is StatusCode.ERROR


def test_a_map_chunk_is_a_span(instrumented: InMemorySpanExporter) -> None:
    with (
        mp.Pool(workers=2, backend="thread") as pool,
        tracer.start_as_current_span("batch") as batch,
    ):
        assert list(pool.map(square, range(8), chunksize=4)) == [x * x for x in range(8)]
    assert flush_events(DEADLINE)
    spans = task_spans(instrumented.get_finished_spans())
    assert sum((s.attributes or {}).get("makeparallel.map.items", 0) for s in spans) == 8
    for span in spans:
        assert span.parent is not None
        assert span.parent.span_id == batch.get_span_context().span_id


def test_a_task_not_queued_ends_its_span(instrumented: InMemorySpanExporter) -> None:
    release = threading.Event()
    with mp.Pool(workers=1, backend="thread", max_pending=1, pending_timeout=0) as pool:
        running = pool.submit(release.wait)
        wait_until(running.running, what="the worker busy")
        queued = pool.submit(square, 1)
        with pytest.raises(mp.PoolFullError):
            pool.submit(square, 2)
        release.set()
        mp.gather([running, queued], timeout=DEADLINE)
    assert flush_events(DEADLINE)
    outcomes = [(s.attributes or {})["makeparallel.outcome"] for s in exporter.get_finished_spans()]
    assert sorted(outcomes) == ["not_queued", "succeeded", "succeeded"]
    [refused] = [
        s for s in exporter.get_finished_spans() if s.status.status_code is StatusCode.ERROR
    ]
    assert "PoolFullError" in (refused.status.description or "")


def test_uninstrumented_tasks_make_no_spans() -> None:
    exporter.clear()
    otel.instrument(tracer_provider=provider)
    otel.instrument(tracer_provider=provider)  # twice changes nothing
    assert otel.is_instrumented()
    otel.uninstrument()
    assert not otel.is_instrumented()
    with (
        mp.Pool(workers=1, backend="thread") as pool,
        tracer.start_as_current_span("request") as request,
    ):
        trace_id, _, _ = pool.submit(seen_from_the_task).result(timeout=DEADLINE)
    assert flush_events(DEADLINE)
    assert task_spans(exporter.get_finished_spans()) == []
    # the thread engine still runs the task in the submitter's context
    assert trace_id == request.get_span_context().trace_id


def test_without_opentelemetry_the_missing_package_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "makeparallel.observe.otel")
    with pytest.raises(ImportError, match=r'pip install "makeparallel\[otel\]"'):
        importlib.import_module("makeparallel.observe.otel")
