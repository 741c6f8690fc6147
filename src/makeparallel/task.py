"""What a running task can ask about itself: ``current_task()`` and ``report_progress()``.

They live in ``_worker.context``, with what a worker process imports; this
module is their public home.
"""

from __future__ import annotations

from ._worker.context import TaskContext, current_task, report_progress

__all__ = ["TaskContext", "current_task", "report_progress"]
