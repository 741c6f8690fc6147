"""OpenTelemetry: a span for every task, a child of the span that submitted it.

    submit (caller's thread) --_Tracing.submitted--> task span started under the current
        span; its context goes with the task as W3C headers (task.trace)
    worker thread or process: the headers are the current context around the call
        (_worker.trace), so spans the task starts are children of its task span
    events thread: started / retried / finished events --> span events, attributes, end

``instrument()`` turns it on for every pool, ``uninstrument()`` off. While it
is off, submitting costs nothing more than before (one attribute read). The
span starts when the task is submitted and ends when it ends, so it covers
the wait in the queue too; each attempt's start is a span event. Spans are
ended on makeparallel's events thread, with the time the task ended:
``makeparallel.observe.flush_events()`` waits until they are.

This module must never fail a task or a submit because of tracing.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as missing:
    raise ImportError(
        "makeparallel.observe.otel needs OpenTelemetry's API: "
        'pip install "makeparallel[otel]" (and an SDK or distro to export the spans)'
    ) from missing

from .. import _submit_hook
from .._task import qualified_name
from .._worker.trace import inject
from .events import TaskEvent, add_listener, remove_listener

if TYPE_CHECKING:
    from .._task import Task
    from ..handle import Handle

__all__ = ["instrument", "is_instrumented", "uninstrument"]

logger = logging.getLogger("makeparallel")

_FAILED = ("failed", "timed_out")  # the outcomes that set an error status
_END_WAIT = 5.0  # seconds: a failed task's exception is set just after its event is sent


class _Tracing:
    """Starts a span per submitted task and ends it when the task's events say so."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self.lock = threading.Lock()
        self.spans: dict[int, tuple[Span, Handle[Any]]] = {}  # by task id, until it ends
        self.active = True  # False after uninstrument: it only ends the spans it began

    # -- the submit hook (the caller's thread) ---------------------------------------------

    def submitted(self, task: Task, pool: str) -> None:
        if task.trace is not None or not self.active:
            return
        try:
            handle = task.handle
            attributes: dict[str, Any] = {
                "makeparallel.task.id": task.id,
                "makeparallel.task.name": handle.name,
                "makeparallel.function": qualified_name(task.fn),
                "makeparallel.pool": pool,
            }
            if task.items is not None:
                attributes["makeparallel.map.items"] = len(task.items)
            span = self.tracer.start_span(
                f"makeparallel {handle.name}", kind=SpanKind.INTERNAL, attributes=attributes
            )
            task.trace = inject(trace.set_span_in_context(span, otel_context.get_current()))
            with self.lock:
                kept = self.active  # (uninstrumented since: its listener may be gone)
                if kept:
                    self.spans[task.id] = (span, handle)
            if not kept:
                span.end()
        except Exception:
            logger.exception("makeparallel could not start a span for task %d", task.id)

    def not_queued(self, task: Task, error: BaseException) -> None:
        with self.lock:
            entry = self.spans.pop(task.id, None)
        if entry is not None:
            span = entry[0]
            span.set_attribute("makeparallel.outcome", "not_queued")
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()

    # -- the listener (the events thread) -----------------------------------------------

    def __call__(self, event: TaskEvent) -> None:
        if event.task_id is None:
            return
        with self.lock:
            entry = self.spans.get(event.task_id)
            if entry is None:
                return
            if event.kind == "finished":
                del self.spans[event.task_id]
            done = not self.active and not self.spans
        span, handle = entry
        when = int(event.time * 1e9)
        kind = event.kind
        if kind == "started":
            span.add_event("started", _attributes(event), timestamp=when)
        elif kind == "retried":
            span.add_event("retried", _attributes(event), timestamp=when)
        elif kind == "finished":
            self._end(span, handle, event, when)
        if done:
            remove_listener(self)  # uninstrumented, and its last span has ended

    def _end(self, span: Span, handle: Handle[Any], event: TaskEvent, when: int) -> None:
        span.set_attributes(_attributes(event))
        worker = handle.worker
        if worker is not None:
            span.set_attribute("makeparallel.worker", worker)
        if event.outcome in _FAILED:
            error = _exception_of(handle)
            if error is not None:
                span.record_exception(error, timestamp=when)
            description = f"{event.exception_type}: {error}" if error else event.exception_type
            span.set_status(Status(StatusCode.ERROR, description))
        span.end(end_time=when)


def _attributes(event: TaskEvent) -> dict[str, Any]:
    attributes: dict[str, Any] = {"makeparallel.attempt": event.attempt}
    for key, value in (
        ("makeparallel.outcome", event.outcome),
        ("makeparallel.worker.pid", event.worker_pid),
        ("makeparallel.wait_seconds", event.wait_seconds),
        ("makeparallel.run_seconds", event.run_seconds),
        ("exception.type", event.exception_type),
    ):
        if value is not None:
            attributes[key] = value
    return attributes


def _exception_of(handle: Handle[Any]) -> BaseException | None:
    # The finished event is sent as the task moves to its end state, a moment before
    # the handle gets its exception: wait for it, briefly.
    try:
        return handle.exception(timeout=_END_WAIT)
    except BaseException:
        return None


_lock = threading.Lock()
_current: _Tracing | None = None


def instrument(tracer_provider: trace.TracerProvider | None = None) -> None:
    """Make a span of every task of every pool, a child of the span current at submit.

    ``tracer_provider``: where the spans go (default: the global one). Calling it
    again while instrumented changes nothing.
    """
    global _current
    with _lock:
        if _current is not None:
            return
        from .. import __version__

        tracer = trace.get_tracer("makeparallel", __version__, tracer_provider=tracer_provider)
        tracing = _Tracing(tracer)
        add_listener(tracing)
        _submit_hook.watcher = tracing
        _current = tracing


def uninstrument() -> None:
    """Stop making spans; those of tasks still running end as their tasks end."""
    global _current
    with _lock:
        tracing, _current = _current, None
        if tracing is None:
            return
        _submit_hook.watcher = None
        with tracing.lock:
            tracing.active = False
            idle = not tracing.spans
        if idle:
            remove_listener(tracing)


def is_instrumented() -> bool:
    return _current is not None
