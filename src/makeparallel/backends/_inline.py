"""Running a task in this very process (thread and serial engines)."""

from __future__ import annotations

import time
from itertools import starmap
from typing import Any

from .. import task as task_api
from .._task import Task, annotate, context_note


def run_here(task: Task, worker: str | None) -> tuple[bool, Any]:
    """Run ``task`` now, inside its task context; returns ``(True, value)`` or ``(False, exc)``.

    A map chunk always "succeeds" with ``(values, {offset: exception})``.
    """
    handle = task.handle
    context, token = task_api.enter(
        task.id,
        handle.name,
        handle.metadata,
        task.attempt,
        worker,
        handle._set_progress,
        task.cancel_event,
    )
    try:
        return _call(task, worker)
    finally:
        task_api.leave(context, token)


def _call(task: Task, worker: str | None) -> tuple[bool, Any]:
    if task.items is None:
        try:
            return True, task.fn(*task.args, **task.kwargs)
        except BaseException as exc:
            return False, annotate(exc, context_note(task, worker))
    fn, star = task.fn, task.star
    values: list[Any] = []
    errors: dict[int, BaseException] = {}
    remaining = iter(task.items)
    started = time.perf_counter()
    while True:
        # list.extend keeps what it got before an item raised; the iterator resumes after it
        try:
            values.extend(starmap(fn, remaining) if star else map(fn, remaining))
            break
        except BaseException as exc:
            item = task.first_index + len(values)
            errors[len(values)] = annotate(exc, context_note(task, worker, item))
            values.append(None)
    return True, (values, errors, time.perf_counter() - started)
