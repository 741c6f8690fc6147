"""StatsD: every pool's task events as counters, timings and gauges.

    pool --TaskEvent--> events thread --> StatsdReporter --> client.incr / timing / gauge

``attach(client)`` registers a listener; the client is anything with the
``statsd.StatsClient`` methods ``incr``, ``timing`` and ``gauge``, so this
module never imports the ``statsd`` package unless ``attach`` is asked to make
the client itself. The reporter runs on makeparallel's events thread, never on
a pool's: a slow client delays only later events. It must never raise into that
thread: a client that fails is logged once and the metric is dropped.

Names, under ``{prefix}.{pool}``:

- counters ``tasks.submitted``, ``tasks.started``, ``tasks.retried``, one per
  outcome (``tasks.succeeded``, ``tasks.failed``, ``tasks.cancelled``,
  ``tasks.timed_out``), ``workers.started`` and one per reason a worker exited
  (``workers.crashed``, ``workers.retired``, ``workers.stopped``);
- timings in milliseconds ``tasks.wait`` (queued until started) and
  ``tasks.run`` (each attempt);
- gauges ``tasks.queued`` and ``tasks.running``, counted from the events seen
  since ``attach`` (tasks submitted before it are not in them);
- per function (``functions=True``), under ``functions.{function}``: one
  counter per outcome and the ``run`` timing. The first ``MAX_FUNCTIONS``
  names are kept apart, the rest share ``other``.

Pool and function names are made StatsD-safe: every character other than a
letter, digit, ``_`` or ``-`` becomes ``_`` (so ``app.jobs.resize`` is
``app_jobs_resize``: a dot would be a level of the metric's hierarchy).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .events import TaskEvent, add_listener, remove_listener

if TYPE_CHECKING:
    from ..pool import Pool

__all__ = ["MAX_FUNCTIONS", "StatsClient", "StatsdReporter", "attach"]

logger = logging.getLogger("makeparallel")

MAX_FUNCTIONS = 100  # distinct function names sent apart; the rest are "other"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_INSTALL = 'the StatsD client needs the statsd package: pip install "makeparallel[statsd]"'


class StatsClient(Protocol):
    """What the reporter uses of a ``statsd.StatsClient`` (or any client like it)."""

    def incr(self, stat: str, count: int = 1, rate: float = 1) -> Any: ...

    def timing(self, stat: str, delta: float, rate: float = 1) -> Any: ...

    def gauge(self, stat: str, value: float, rate: float = 1, delta: bool = False) -> Any: ...


def safe_name(name: str) -> str:
    """``name`` as one level of a StatsD metric name."""
    return _UNSAFE.sub("_", name) or "_"


class StatsdReporter:
    """The listener ``attach`` registers; ``detach()`` stops it (twice is harmless)."""

    def __init__(
        self,
        client: StatsClient,
        prefix: str,
        pool: Pool | None,
        functions: bool,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.functions = functions
        self._pool = pool
        self._pools: dict[str, str] = {}  # pool name -> "{prefix}.{safe pool name}"
        self._names: dict[str, str] = {}  # function name -> its safe name, or "other"
        # Tasks seen since attach, by id: True while running, False while queued.
        # Only the events thread touches these (listeners run there one at a time).
        self._tasks: dict[int, bool] = {}
        self._counts: dict[str, list[int]] = {}  # pool base -> [queued, running]
        self._lock = threading.Lock()
        self._attached = True
        self._failed = False
        self._owns_client = False

    def detach(self) -> None:
        """Stop sending metrics."""
        with self._lock:
            if not self._attached:
                return
            self._attached = False
        if self._pool is not None:
            self._pool.remove_listener(self)
        else:
            remove_listener(self)
        close = getattr(self.client, "close", None)
        if self._owns_client and callable(close):
            close()  # its socket (a client passed in stays the caller's)

    def __call__(self, event: TaskEvent) -> None:
        try:
            self._report(event)
        except Exception:  # never into the events thread: this is monitoring, not work
            if not self._failed:
                self._failed = True
                logger.exception(
                    "the StatsD client %r failed; makeparallel's metrics are dropped "
                    "while it fails (logged once)",
                    self.client,
                )

    # -- inside -------------------------------------------------------------------------

    def _report(self, event: TaskEvent) -> None:
        base = self._pools.get(event.pool)
        if base is None:
            base = self._pools[event.pool] = f"{self.prefix}.{safe_name(event.pool)}"
        client = self.client
        kind = event.kind
        if kind == "worker_started":
            client.incr(f"{base}.workers.started")
            return
        if kind == "worker_exited":
            client.incr(f"{base}.workers.{safe_name(event.outcome or 'exited')}")
            return
        client.incr(f"{base}.tasks.{event.outcome if kind == 'finished' else kind}")
        if kind == "started" and event.wait_seconds is not None:  # (once per attempt)
            client.timing(f"{base}.tasks.wait", event.wait_seconds * 1000.0)
        if event.run_seconds is not None:
            client.timing(f"{base}.tasks.run", event.run_seconds * 1000.0)
        if kind == "finished" and self.functions and event.function:
            function = f"{base}.functions.{self._function(event.function)}"
            client.incr(f"{function}.{event.outcome}")
            if event.run_seconds is not None:
                client.timing(f"{function}.run", event.run_seconds * 1000.0)
        self._gauges(base, event)

    def _gauges(self, base: str, event: TaskEvent) -> None:
        task_id = event.task_id
        if task_id is None:
            return
        counts = self._counts.get(base)
        if counts is None:
            counts = self._counts[base] = [0, 0]
        kind = event.kind
        if kind == "submitted":
            self._tasks[task_id] = False
            counts[0] += 1
        else:
            running = self._tasks.get(task_id)
            if running is None:
                return  # submitted before attach: not counted
            counts[running] -= 1
            if kind == "finished":
                del self._tasks[task_id]
            else:  # started, or retried: back in the queue
                now_running = kind == "started"
                self._tasks[task_id] = now_running
                counts[now_running] += 1
        self.client.gauge(f"{base}.tasks.queued", counts[0])
        self.client.gauge(f"{base}.tasks.running", counts[1])

    def _function(self, name: str) -> str:
        safe = self._names.get(name)
        if safe is None:
            safe = "other" if len(self._names) >= MAX_FUNCTIONS else safe_name(name)
            if safe != "other":
                self._names[name] = safe
        return safe


def attach(
    client: StatsClient | None = None,
    prefix: str = "makeparallel",
    *,
    pool: Pool | None = None,
    functions: bool = True,
) -> StatsdReporter:
    """Send the task events of every pool (or of ``pool`` alone) to StatsD.

    ``client`` is a ``statsd.StatsClient`` or any object with its ``incr``,
    ``timing`` and ``gauge`` methods; without one, a ``statsd.StatsClient()``
    for localhost:8125 is made (that needs ``pip install "makeparallel[statsd]"``).
    ``functions=False`` leaves out the per-function metrics. Returns the
    reporter: ``reporter.detach()`` stops it.
    """
    if not isinstance(prefix, str) or not prefix:
        raise TypeError(f"prefix must be a non-empty string, got {prefix!r}")
    made = False  # the client was made here: detach() closes it
    if client is None:
        try:
            import statsd  # type: ignore[import-untyped, unused-ignore]
        except ImportError as missing:
            raise ImportError(_INSTALL) from missing
        client = statsd.StatsClient()
        made = True
    for method in ("incr", "timing", "gauge"):
        if not callable(getattr(client, method, None)):
            raise TypeError(
                f"the StatsD client must have incr, timing and gauge methods (as "
                f"statsd.StatsClient has); {client!r} has no {method}"
            )
    assert client is not None
    reporter = StatsdReporter(client, prefix.rstrip("."), pool, functions)
    reporter._owns_client = made
    if pool is not None:
        pool.add_listener(reporter)
    else:
        add_listener(reporter)
    return reporter
