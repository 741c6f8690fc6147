"""The per-worker memory limit: one guard, asked between tasks and, to kill, while they run.

``memory_limit_action="recycle"`` (the default): a worker found over the
limit when its task ends is retired and replaced. ``"kill"``: the I/O thread
also checks the workers running a task every ``INTERVAL`` seconds and stops
a task whose worker is over the limit, with ``MemoryLimitError``.

A forked worker shares its parent's pages until it writes to them, so for
forked workers the guard counts the memory a worker has to itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..._memory import describe, private_bytes, resident_bytes
from ..._task import Task
from ...errors import MemoryLimitError

logger = logging.getLogger("makeparallel")

INTERVAL = 0.1  # seconds between checks of running tasks (action "kill")


class MemoryGuard:
    def __init__(self, limit: int | None, kill: bool, shared_pages: bool) -> None:
        self.limit = limit
        self.kills = kill and limit is not None  # checks running tasks
        self._measure: Callable[[int], int | None] = (
            private_bytes if shared_pages else resident_bytes
        )

    def over(self, pid: int) -> int | None:
        """The memory ``pid`` uses when that is over the limit, else None."""
        if self.limit is None:
            return None
        used = self._measure(pid)
        return used if used is not None and used > self.limit else None

    def should_recycle(self, pid: int, label: str) -> bool:
        """A worker between tasks: whether to replace it."""
        used = self.over(pid)
        if used is None:
            return False
        assert self.limit is not None
        logger.info(
            "recycling worker %s: it uses %s, over the pool's memory limit of %s",
            label,
            describe(used),
            describe(self.limit),
        )
        return True

    def error(self, task: Task, label: str, used: int) -> MemoryLimitError:
        """What a task stopped for its worker's memory fails with."""
        assert self.limit is not None
        return MemoryLimitError(
            f"{task.describe()} was stopped: its worker {label} used "
            f"{describe(used)}, over the pool's memory limit of {describe(self.limit)}",
            **task.context(label),
        )
