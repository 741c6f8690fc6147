"""Running a task in this very process (thread and serial engines)."""

from __future__ import annotations

from typing import Any

from .._task import Task, annotate, context_note
from .._worker import context as task_api
from .._worker import trace
from .._worker.chunk import run_items


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
    span = None if task.trace is None else trace.enter(task.trace)
    try:
        return _call(task, worker)
    finally:
        if span is not None:
            span()
        task_api.leave(context, token)


def _call(task: Task, worker: str | None) -> tuple[bool, Any]:
    if task.items is None:
        try:
            return True, task.fn(*task.args, **task.kwargs)
        except BaseException as exc:
            return False, annotate(exc, context_note(task, worker))

    def record(exc: BaseException, offset: int) -> BaseException:
        return annotate(exc, context_note(task, worker, task.first_index + offset))

    return True, run_items(task.fn, task.star, task.items, record)
