"""Observability: the event stream, metrics and the task table.

``makeparallel.observe`` has what ``pool.metrics()``, ``pool.tasks()`` and
listeners give; ``mp.metrics()``, ``mp.add_listener()`` and
``mp.remove_listener()`` are the same for every pool at once.
"""

from __future__ import annotations

from .events import KINDS, TaskEvent, add_listener, flush_events, remove_listener

__all__ = ["KINDS", "TaskEvent", "add_listener", "flush_events", "remove_listener"]
