"""The one hook in the submit path, for instrumentation (``observe.otel``).

While nothing is instrumented ``watcher`` is None, and a submit pays one
attribute read for it. A watcher sees each task in the submitting thread,
before the task is prepared for its engine - so what it puts in
``task.trace`` travels with the task, to a worker process too - and hears
of a task that was then not queued after all (a full queue, a closed pool),
which no event will ever end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._task import Task


class Watcher(Protocol):
    def submitted(self, task: Task, pool: str) -> None: ...

    def not_queued(self, task: Task, error: BaseException) -> None: ...


watcher: Watcher | None = None
