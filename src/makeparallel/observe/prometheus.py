"""Prometheus metrics of every live pool: ``register()`` a collector, ``serve()`` /metrics.

    each live Pool ----pool.metrics() at scrape time----> counters, gauges ----+
    event stream --listener--> _Durations (cumulative buckets) -> histograms --+--> collect()
    live CircuitBreakers ----.state at scrape time----> breaker gauge ---------+

Counters and gauges are read from each pool's metrics snapshot when
Prometheus scrapes, so they count from the pool's creation whenever
``register()`` was called, and cost nothing between scrapes. Histograms need
every duration, which a snapshot does not keep (it holds the last 1,024), so
``register()`` attaches a listener to the event stream that files each wait
and run time into buckets; histograms count from ``register()`` on.

Series are labelled by pool, function, outcome, state and reason, never by
task id, arguments or pid: those grow without bound and would swamp a
Prometheus server. Per pool, at most ``MAX_FUNCTIONS`` function names get a
label of their own; the rest are counted under ``"other"``. Nothing is kept
for a pool after it is gone.
"""

from __future__ import annotations

try:
    import prometheus_client
except ImportError:
    raise ImportError(
        "makeparallel.observe.prometheus needs the prometheus_client package: "
        'pip install "makeparallel[prometheus]"'
    ) from None

import bisect
import errno
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from ..policies import CircuitBreaker, CircuitState, live_breakers
from ..pool import Pool, live_pools
from .events import TaskEvent, add_listener, remove_listener
from .record import MAX_FUNCTIONS, OTHER

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = [
    "BREAKER_STATES",
    "BUCKETS",
    "MetricsServer",
    "PoolCollector",
    "register",
    "serve",
    "unregister",
]

#: histogram bucket bounds in seconds, from a millisecond to five minutes
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

#: the value of makeparallel_circuit_breaker_state for each state
BREAKER_STATES = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}

# name (without _total) -> (type, help, labels)
_FAMILIES = {
    "makeparallel_tasks_submitted": ("counter", "Tasks submitted", ("pool", "function")),
    "makeparallel_tasks_finished": (
        "counter",
        "Tasks ended, by outcome: succeeded, failed, cancelled, timed_out",
        ("pool", "function", "outcome"),
    ),
    "makeparallel_task_retries": ("counter", "Attempts tried again", ("pool", "function")),
    "makeparallel_queue_depth": ("gauge", "Tasks waiting for a worker or a retry", ("pool",)),
    "makeparallel_workers": ("gauge", "Workers: busy, idle, starting", ("pool", "state")),
    "makeparallel_worker_busy_seconds": ("counter", "Seconds spent running tasks", ("pool",)),
    "makeparallel_worker_restarts": (
        "counter",
        "Workers replaced: crashed, or other (stopped or recycled by the pool)",
        ("pool", "reason"),
    ),
}
# (outcome label, the FunctionMetrics field it is read from)
_OUTCOMES = (
    ("succeeded", "completed"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
    ("timed_out", "timed_out"),
)
_BOUNDS = [*(str(float(b)) for b in BUCKETS), "+Inf"]


def _histograms() -> tuple[HistogramMetricFamily, HistogramMetricFamily]:
    return (
        HistogramMetricFamily(
            "makeparallel_task_wait_seconds",
            "Seconds a task waited in the queue before an attempt started",
            labels=["pool", "function"],
        ),
        HistogramMetricFamily(
            "makeparallel_task_run_seconds",
            "Seconds each attempt of a task ran",
            labels=["pool", "function"],
        ),
    )


class _Durations:
    """Wait and run histograms per (pool, function), fed by task events.

    Called on makeparallel's events thread and read on the scraping thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # ("wait" | "run", pool, function) -> (count per bucket, +Inf last; [sum of seconds])
        self._series: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}
        self._names: dict[str, set[str]] = {}  # per pool: the functions labelled by name

    def __call__(self, event: TaskEvent) -> None:
        if event.kind == "started":
            which, seconds = "wait", event.wait_seconds
        elif event.kind in ("retried", "finished"):
            which, seconds = "run", event.run_seconds
        else:
            return
        if seconds is None:
            return  # cancelled while queued: it never ran
        with self._lock:
            key = (which, event.pool, self._label(event.pool, event.function or OTHER))
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = ([0] * len(_BOUNDS), [0.0])
            series[0][bisect.bisect_left(BUCKETS, seconds)] += 1
            series[1][0] += seconds

    def _label(self, pool: str, function: str) -> str:
        """Called with the lock held: a pool's first MAX_FUNCTIONS names are its labels."""
        names = self._names.setdefault(pool, set())
        if function not in names:
            if len(names) >= MAX_FUNCTIONS:
                return OTHER
            names.add(function)
        return function

    def families(self, pools: set[str]) -> tuple[HistogramMetricFamily, HistogramMetricFamily]:
        """The histograms of ``pools`` (the live ones); the others' data is dropped."""
        with self._lock:
            for key in [k for k in self._series if k[1] not in pools]:
                del self._series[key]
            for pool in [p for p in self._names if p not in pools]:
                del self._names[pool]
            rows = [(key, list(counts), total[0]) for key, (counts, total) in self._series.items()]
        wait, run = _histograms()
        for (which, pool, function), counts, total in sorted(rows):
            cumulative, seen = [], 0
            for bound, count in zip(_BOUNDS, counts, strict=True):
                seen += count
                cumulative.append((bound, float(seen)))
            (wait if which == "wait" else run).add_metric([pool, function], cumulative, total)
        return wait, run


class PoolCollector(Collector):
    """makeparallel's metric families, built from the live pools at each scrape."""

    def __init__(self) -> None:
        self.durations = _Durations()
        # A replacement is counted a moment after the crash it follows, so replacements
        # minus crashes may dip for an instant; a counter must not: keep its highest.
        self._other_restarts: weakref.WeakKeyDictionary[Pool, int] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()  # (two scrapes may run at once)

    def describe(self) -> Iterator[prometheus_client.Metric]:
        # The families, without samples: a registry can then refuse a second
        # collector that would expose the same series again.
        yield from _pool_families({})
        yield _breaker_family([])
        yield from _histograms()

    def collect(self) -> Iterator[prometheus_client.Metric]:
        pools = live_pools()
        values: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in _FAMILIES}
        for pool in pools:
            self._read(pool, values)
        yield from _pool_families(values)
        yield _breaker_family(live_breakers())
        yield from self.durations.families({pool.name for pool in pools})

    def _read(self, pool: Pool, values: dict[str, dict[tuple[str, ...], float]]) -> None:
        """Add ``pool``'s numbers to ``values`` (summed: two live pools may share a name)."""

        def add(family: str, labels: tuple[str, ...], value: float) -> None:
            values[family][labels] = values[family].get(labels, 0.0) + value

        metrics = pool.metrics()
        engine = pool._backend.stats()  # (workers by state, as health() counts them)
        name = pool.name
        for function, counts in metrics.by_function.items():
            add("makeparallel_tasks_submitted", (name, function), counts.submitted)
            add("makeparallel_task_retries", (name, function), counts.retried)
            for outcome, field in _OUTCOMES:
                add(
                    "makeparallel_tasks_finished", (name, function, outcome), getattr(counts, field)
                )
        add("makeparallel_queue_depth", (name,), metrics.queued)
        busy = min(metrics.running, engine.alive)
        add("makeparallel_workers", (name, "busy"), busy)
        add("makeparallel_workers", (name, "idle"), engine.alive - busy)
        add("makeparallel_workers", (name, "starting"), engine.starting)
        add("makeparallel_worker_busy_seconds", (name,), metrics.busy_seconds)
        other = metrics.worker_restarts - metrics.worker_crashes
        with self._lock:
            other = self._other_restarts[pool] = max(other, self._other_restarts.get(pool, 0))
        add("makeparallel_worker_restarts", (name, "crashed"), metrics.worker_crashes)
        add("makeparallel_worker_restarts", (name, "other"), other)


def _pool_families(
    values: dict[str, dict[tuple[str, ...], float]],
) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    for name, (kind, doc, labels) in _FAMILIES.items():
        make = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        family = make(name, doc, labels=labels)
        for label_values, value in sorted(values.get(name, {}).items()):
            family.add_metric(label_values, value)
        yield family


def _breaker_family(breakers: Sequence[CircuitBreaker]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "makeparallel_circuit_breaker_state",
        "Circuit breaker state: 0 closed, 1 half-open, 2 open",
        labels=["breaker"],
    )
    states: dict[str, int] = {}
    for breaker in breakers:  # (breakers sharing a name show the worst state)
        states[breaker.name] = max(BREAKER_STATES[breaker.state], states.get(breaker.name, 0))
    for name, value in sorted(states.items()):
        family.add_metric([name], value)
    return family


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, PoolCollector] = (
    weakref.WeakKeyDictionary()
)
_collectors_lock = threading.Lock()


def register(registry: CollectorRegistry | None = None) -> PoolCollector:
    """Expose every live pool's metrics in ``registry`` (default: prometheus_client's).

    Registering again into the same registry returns the collector already there.
    Histograms count from this call on; counters from each pool's creation.
    """
    registry = prometheus_client.REGISTRY if registry is None else registry
    with _collectors_lock:
        collector = _collectors.get(registry)
        if collector is not None:
            return collector
        collector = PoolCollector()
        try:
            registry.register(collector)
        except ValueError as exc:
            raise ValueError(
                f"this registry already has series with makeparallel's names ({exc}); "
                "add makeparallel's metrics to a registry only with register(), which "
                "does nothing the second time"
            ) from None
        _collectors[registry] = collector
        add_listener(collector.durations)
        return collector


def unregister(registry: CollectorRegistry | None = None) -> None:
    """Take makeparallel's metrics out of ``registry`` again; a no-op if they are not in it."""
    registry = prometheus_client.REGISTRY if registry is None else registry
    with _collectors_lock:
        collector = _collectors.pop(registry, None)
        if collector is not None:
            registry.unregister(collector)
            remove_listener(collector.durations)


class MetricsServer:
    """The HTTP endpoint ``serve()`` started: ``url`` to scrape, ``close()`` to stop it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, addr: str, port: int) -> None:
        self._server = server
        self._thread = thread
        self.port = port
        host = f"[{addr}]" if ":" in addr else addr
        self.url = f"http://{host}:{port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> MetricsServer:
    """Register makeparallel's metrics and serve ``registry`` at ``http://addr:port/metrics``.

    Bound to this machine only unless ``addr`` says otherwise (``"0.0.0.0"``:
    every interface). ``port=0`` picks a free port (``.port`` says which).
    """
    registry = prometheus_client.REGISTRY if registry is None else registry
    register(registry)
    try:
        server, thread = prometheus_client.start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise OSError(
            exc.errno,
            f"cannot serve Prometheus metrics on {addr}:{port}: port {port} is in use; "
            "pass another port, or port=0 for a free one",
        ) from exc
    return MetricsServer(server, thread, addr, server.server_port)
