"""Running a task in this very process (thread and serial engines)."""

from __future__ import annotations

from typing import Any

from .._task import Task, annotate, context_note


def run_here(task: Task, worker: str | None) -> tuple[bool, Any]:
    """Run ``task`` now; returns ``(True, value)`` or ``(False, exception)``.

    A map chunk always "succeeds" with a list of per-item ``(ok, value)``.
    """
    if task.items is None:
        try:
            return True, task.fn(*task.args, **task.kwargs)
        except BaseException as exc:
            return False, annotate(exc, context_note(task, worker))
    outcomes: list[tuple[bool, Any]] = []
    for offset, item in enumerate(task.items):
        try:
            outcomes.append((True, task.fn(*item)))
        except BaseException as exc:
            note = context_note(task, worker, task.first_index + offset)
            outcomes.append((False, annotate(exc, note)))
    return True, outcomes
