"""A traced task's span context, made current where the task runs.

``observe.otel`` starts each task's span in the submitting process and sends
its context with the task as W3C ``traceparent`` / ``baggage`` headers. Here,
in a worker process or a worker thread, the headers become the current
OpenTelemetry context around the call, so spans the task starts are children
of its task span, in the same trace.

The hop is makeparallel's own, so both ends use the W3C propagators whatever
the application configured for its own hops (a spawned worker would not know
that configuration). This module is imported by worker processes: it must
not import opentelemetry until a traced task arrives, and it must never fail
a task - without opentelemetry-api the task runs untraced.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no typing import at run time: workers import this module
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_propagator: Any = None  # built when the first traced task arrives; False: no opentelemetry


def _w3c() -> Any:
    """The W3C trace-context and baggage propagator, or None without opentelemetry-api."""
    global _propagator
    if _propagator is None:
        try:
            from opentelemetry.baggage.propagation import W3CBaggagePropagator
            from opentelemetry.propagators.composite import CompositePropagator
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            _propagator = False
        else:
            _propagator = CompositePropagator(
                [TraceContextTextMapPropagator(), W3CBaggagePropagator()]
            )
    return _propagator or None


def enter(headers: dict[str, str]) -> Callable[[], None] | None:
    """Make the context in ``headers`` current; returns what restores the previous one."""
    propagator = _w3c()
    if propagator is None:
        return None
    from opentelemetry import context

    token = context.attach(propagator.extract(headers))

    def leave() -> None:
        context.detach(token)

    return leave


def inject(context: object) -> dict[str, str]:
    """The headers that carry ``context`` (an OpenTelemetry ``Context``) to ``enter``."""
    headers: dict[str, str] = {}
    propagator = _w3c()
    if propagator is not None:
        propagator.inject(headers, context=context)
    return headers
