"""Stand-ins for an engine's seams: the pool's queue (``Sink``), the I/O thread, a process."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from makeparallel._task import Task
from makeparallel.backends.process.workers import Worker


class FakeSink:
    """The pool's queue as an engine sees it."""

    def __init__(self, tasks: list[Task]) -> None:
        self.queue = deque(tasks)
        self.ended: list[tuple[Task, bool, object]] = []

    def take(self, ahead: bool = False) -> Task | None:
        taken = self.take_some(1, ahead)
        return taken[0] if taken else None

    def take_some(self, limit: int, ahead: bool = False) -> list[Task]:
        taken: list[Task] = []
        while self.queue and len(taken) < limit:
            if (ahead or taken) and not self.queue[0].may_wait():
                break
            taken.append(self.queue.popleft())
            taken[-1].handle._start()
        return taken

    def has_pending(self) -> bool:
        return bool(self.queue)

    def pending_count(self) -> int:
        return len(self.queue)

    def finished(self, task: Task, ok: bool, value: object) -> None:
        self.ended.append((task, ok, value))

    def broken(self, error: BaseException) -> None:
        raise AssertionError(f"the engine gave up: {error}")

    def worker_event(self, kind: str, pid: int | None, reason: str | None = None) -> None:
        pass


class FakeIO:
    """The I/O thread, as the other threads see it: requests are only recorded."""

    def __init__(self) -> None:
        self.spawned = 0
        self.watched: list[Worker] = []

    def current(self) -> bool:
        return False

    def call(self, command: Callable[[], None]) -> None:
        pass

    def wake(self) -> None:
        pass

    def watch_writes(self, worker: Worker) -> None:
        self.watched.append(worker)

    def spawn(self, count: int, replacement: bool) -> None:
        self.spawned += count

    def hurry(self) -> None:
        pass

    def stop(self, worker: Worker, task: Task, alone: bool) -> None:
        pass


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
