"""The tasks of one pool, from its queue to their one terminal state.

    Pool.submit --enqueue--> pending (FIFO) --take (the engine)--> running
                                                                       |
                       finished(task, ok, value) <-- the engine -------+
                                |
                          decide (_decision): succeed | retry later | fail
                                                          |
                        retrying (a back-off on the timer) +--> pending again

    a timeout (timer thread), cancel(), a shutdown's deadline --stop--> release,
        the engine makes sure it stops, then it is settled with the error asked for

``TaskBook`` is the engine's ``Sink``: engines pull tasks with ``take`` and
report each end with ``finished``; they never decide what an end means. A
running attempt leaves ``running`` exactly once (``release``): whoever takes
it out settles it, and a late report of the same attempt is ignored. That
is how a result racing a cancel, or a timeout racing a crash, still ends
the task in exactly one state.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from . import _clock, _lifetime, _settings, _submit_hook
from ._decision import Decision, decide
from ._task import Task, stopped_at_shutdown
from ._timer import Timer
from .backends.base import Backend
from .errors import (
    PoolFullError,
    SerializationError,
    TaskCancelledError,
    TaskTimeoutError,
)
from .handle import Handle, TaskState
from .observe import sampling
from .observe.record import Recorder

if TYPE_CHECKING:
    from .policies import CircuitBreaker
    from .pool import Pool

logger = logging.getLogger("makeparallel")

RUNNING, CLOSING, CLOSED = "running", "closing", "closed"

if _settings.debug:  # MAKEPARALLEL_DEBUG=1: from the first task on, everything runs inline
    from ._inline_modes import set_debug

    set_debug(True)


class TaskBook:
    """Every task of one pool that has not ended: queued, running, or waiting to retry."""

    def __init__(self, owner: Pool, max_pending: int | None, pending_timeout: float | None) -> None:
        self.name = owner.name
        self._owner = weakref.ref(owner)  # kept alive while busy (``_lifetime.busy``)
        self.generation = _lifetime.generation
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # a task ended, or left the queue
        self._room = threading.Condition(self.lock)  # max_pending: a queued task left
        self._max_pending = max_pending
        self._pending_timeout = pending_timeout
        self.pending: deque[Task] = deque()
        self.running: dict[int, Task] = {}
        self.retrying: dict[int, Task] = {}  # failed attempts waiting for their back-off
        self.timer = Timer(f"{owner.name}-timer")
        self.state = RUNNING
        self.broken_by: BaseException | None = None  # why no task can run any more
        self.recorder = Recorder(owner.name)  # counts and events (observe/)
        self._engine_closed = False
        self.backend: Backend  # set by the pool once its engine exists

    # -- queueing ----------------------------------------------------------------------

    def enqueue(self, task: Task) -> None:
        if task.items is None:  # what rerun_inline runs again (dropped on success; _rerun)
            task.handle._call = (task.fn, task.args, task.kwargs)
        watcher = _submit_hook.watcher
        if watcher is None:
            self._enqueue(task)
            return
        watcher.submitted(task, self.name)
        try:
            self._enqueue(task)
        except BaseException as error:
            watcher.not_queued(task, error)
            raise

    def _enqueue(self, task: Task) -> None:
        inline = _settings.inline_mode
        if inline is not None:  # a testing or debug mode runs it in this thread (_inline_modes)
            inline.enqueue(self, task)
            return
        try:
            if sampling.sessions:  # a profile is active: this task's trip is timed
                sampling.prepare(self.backend, task)
            else:
                self.backend.prepare(task)
        except SerializationError as error:
            self.refuse(task, error)
            return
        with self.lock:
            self._wait_for_room(task)
            if self.state != RUNNING:
                raise RuntimeError(closed_message(self.name))
            if self.broken_by is not None:
                raise self.broken_by  # as an executor's submit raises BrokenExecutor
            self.recorder.attach(task)
            self.pending.append(task)
            owner = self._owner()
            if owner is not None:
                _lifetime.busy(owner)  # kept until its work is done, even if dropped
        self.backend.poke()

    def refuse(self, task: Task, error: BaseException) -> None:
        """A submitted task fails before it is queued (it cannot be sent, its breaker is open)."""
        task.handle._call = (task.fn, task.args, task.kwargs)
        with self.lock:
            self.recorder.attach(task)  # (its submitted count is written under this lock)
        task.handle._fail(error)

    def withdraw(self, handle: Handle[Any]) -> bool:
        """Take a queued task back, uncounted (a map runs it in its caller's thread);
        False if it has left the queue."""
        with self.lock:
            task = next((t for t in self.pending if t.handle is handle), None)
            if task is None or handle.state is not TaskState.PENDING:
                return False
            self.pending.remove(task)
            self.recorder.forget(task)  # (its submitted count is written under this lock)
            if self._max_pending is not None:
                self._room.notify()
        return handle.cancel()

    def _wait_for_room(self, task: Task) -> None:
        """With ``max_pending``: block (holding no lock while waiting) until the queue has room."""
        limit = self._max_pending
        if limit is None or len(self.pending) < limit:
            return
        deadline = (
            None if self._pending_timeout is None else time.monotonic() + self._pending_timeout
        )
        while len(self.pending) >= limit and self.state == RUNNING and self.broken_by is None:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                waiting = f"{limit} task" if limit == 1 else f"{limit} tasks"
                raise PoolFullError(
                    f"pool {self.name!r} already has {waiting} waiting (max_pending); "
                    f"{task.describe()} was not queued. Wait for results before submitting "
                    "more, raise max_pending, or set pending_timeout to wait longer"
                )
            self._room.wait(remaining)

    # -- what engines call (the Sink protocol) -----------------------------------------

    def take(self, ahead: bool = False) -> Task | None:
        with self.lock:
            return self._take_locked(ahead)

    def take_some(self, limit: int, ahead: bool = False) -> list[Task]:
        tasks: list[Task] = []
        with self.lock:
            while len(tasks) < limit:
                task = self._take_locked(ahead or bool(tasks))
                if task is None:
                    break
                tasks.append(task)
        return tasks

    def _take_locked(self, ahead: bool) -> Task | None:
        pending = self.pending
        while pending:
            if ahead and not pending[0].may_wait():
                return None  # its clock starts now: it must go to a worker that starts it
            task = pending.popleft()
            if self._max_pending is not None:
                self._room.notify()
            if self._begin_locked(task):
                return task
            self.changed.notify_all()  # a cancelled task left the queue
        return None

    def _begin_locked(self, task: Task) -> bool:
        """Mark ``task`` running and start its timeout; False if it was cancelled."""
        if not task.handle._start():
            return False
        self.running[task.id] = task
        if task.timeout is not None:
            task.deadline_entry = self.timer.call_at(
                _clock.monotonic() + task.timeout, functools.partial(self._expire, task)
            )
        return True

    # -- what an inline mode calls (_inline_modes: it runs tasks that were never queued) --

    def admit(self, task: Task) -> None:
        """Count ``task`` as submitted to this pool without queueing it."""
        with self.lock:
            if self.state != RUNNING:
                raise RuntimeError(closed_message(self.name))
            self.recorder.attach(task)
            owner = self._owner()
            if owner is not None:
                _lifetime.busy(owner)

    def begin(self, task: Task) -> bool:
        """Mark an admitted task running in the caller's thread; False if it was cancelled."""
        with self.lock:
            return self._begin_locked(task)

    def claim_retry(self, task: Task) -> Task | None:
        """The next attempt of ``task`` if one is scheduled: the caller runs it, not the timer."""
        with self.lock:
            following = self.retrying.pop(task.id, None)
        if following is not None and following.retry_entry is not None:
            self.timer.cancel(following.retry_entry)
        return following

    def has_pending(self) -> bool:
        return bool(self.pending)

    def pending_count(self) -> int:
        return len(self.pending)  # a read of one length: no lock needed

    def finished(self, task: Task, ok: bool, value: Any) -> None:
        if not self._release(task):
            return  # an attempt that was already stopped (timeout, cancel) reports late
        if task.profile is not None:  # (before settling: a waiter may end the profile)
            sampling.finished(task)
        self._settle(task, ok, value)
        self.after_change()

    def worker_event(self, kind: str, pid: int | None, reason: str | None = None) -> None:
        self.recorder.worker_event(kind, pid, reason)

    def broken(self, error: BaseException) -> None:
        with self.lock:
            self.broken_by = error
            self._room.notify_all()
            pending = list(self.pending) + list(self.retrying.values())
            self.pending.clear()
            self.retrying.clear()
        for task in pending:
            if task.handle.state is TaskState.PENDING:
                task.handle._fail(error)
        self.after_change()

    # -- how a task ends ---------------------------------------------------------------

    def _release(self, task: Task) -> bool:
        """Take ``task`` out of the running set; False if it is not the running attempt."""
        with self.lock:
            if self.running.get(task.id) is not task:
                return False
            del self.running[task.id]
        if task.deadline_entry is not None:
            self.timer.cancel(task.deadline_entry)
        return True

    def _settle(self, task: Task, ok: bool, value: Any, *, may_retry: bool = True) -> None:
        """End a finished attempt as ``decide`` says: success, another attempt, or failure."""
        error: BaseException | None = None if ok else value
        decision = decide(ok, error, task.attempt, task.retry, task.breaker is not None, may_retry)
        _tell_breaker(task.breaker, decision)
        handle = task.handle
        if decision.outcome == "succeed":
            if not _settings.debug:
                handle._call = None  # (kept for rerun_inline; see _rerun)
            handle._succeed(value)
        elif decision.outcome == "retry":
            assert task.retry is not None
            assert error is not None
            logger.warning(
                "%s failed on attempt %d of %d (%s: %s); retrying in %.2f s",
                task.describe(),
                task.attempt,
                task.retry.attempts,
                type(error).__name__,
                error,
                decision.delay,
            )
            following = task.next_attempt()
            with self.lock:  # whoever takes it from ``retrying`` also finds its timer entry
                self.retrying[task.id] = following
                handle._retry()
                following.retry_entry = self.timer.call_at(
                    _clock.monotonic() + decision.delay,
                    functools.partial(self._resubmit, following),
                )
        else:
            assert error is not None
            handle._fail(error, _terminal_state(error))

    def _resubmit(self, task: Task) -> None:
        with self.lock:
            self.retrying.pop(task.id, None)
            queued = task.handle.state is TaskState.PENDING and self.broken_by is None
            if queued:
                self.pending.append(task)
        if queued:
            self.backend.poke()
        self.after_change()

    def stop(self, task: Task, error: BaseException, *, may_retry: bool) -> bool:
        """End a running attempt from outside: a timeout, a cancel, a shutdown's deadline.

        The attempt leaves the running set first, so whatever it still reports
        is ignored; then the engine makes sure it stops (a process worker is
        killed and replaced, a thread is told to stop); then the task is
        settled with ``error``. False if the attempt had ended already.
        """
        if not self._release(task):
            return False
        self.backend.stop_task(task, error)
        self._settle(task, False, error, may_retry=may_retry)
        self.after_change()
        return True

    def _expire(self, task: Task) -> None:
        assert task.timeout is not None
        how = (
            "its worker process was stopped and replaced"
            if self.backend.kind == "process"
            else "a thread cannot be killed: the task was asked to stop "
            "(current_task().cancelled() is now True) and its result will be dropped"
        )
        error = TaskTimeoutError(
            f"{task.describe()} timed out after {task.timeout:g} s on attempt {task.attempt}; "
            f"{how}",
            **task.context(),
        )
        self.stop(task, error, may_retry=True)

    def cancel_running(self, handle: Handle[Any]) -> bool:
        """Every handle's canceller: stop its running attempt, or forget its scheduled retry."""
        if self.generation != _lifetime.generation:
            return False  # a forked process's copy: the task is the parent's
        with self.lock:
            task = self.running.get(handle.task_id)
            if task is None:
                self.retrying.pop(handle.task_id, None)
        if task is None:
            self.after_change()
            return handle.cancelled()
        error = TaskCancelledError(
            f"{task.describe()} was cancelled while running", **task.context()
        )
        return self.stop(task, error, may_retry=False) or handle.cancelled()

    def after_change(self) -> None:
        if self.pending or self.running or self.retrying:
            # Not idle. Read without the lock: whoever ends the last task checks
            # after its own removal, and so sees the pool idle.
            return
        with self.lock:
            idle = not self.pending and not self.running and not self.retrying
            if idle:
                self.changed.notify_all()
                owner = self._owner()
                if owner is not None:
                    _lifetime.idle(owner)
            close_now = idle and self.state == CLOSING and not self._engine_closed
            if close_now:
                self._engine_closed = True
        if close_now:
            self.backend.close(None, wait=False)

    # -- waiting -----------------------------------------------------------------------

    def refuse_to_wait_here(self, what: object) -> None:
        """Raise if this thread delivers the pool's results (``what``: what would be waited for)."""
        if self.backend.delivers_here():
            raise RuntimeError(
                f"waiting for {what} in a callback on the I/O thread of pool {self.name!r} would "
                "wait for ever: that thread delivers the results. Chain the next step with "
                "on_complete or add_done_callback, or wait in a thread of your own"
            )

    def read_here(self, handle: Handle[Any], timeout: float | None) -> float | None:
        """Every handle's reader: let the engine wait for its running task in this thread.

        Returns what is left of ``timeout``. Refuses to wait in the thread that
        delivers this pool's results (a callback runs there): it would wait for ever.
        """
        self.refuse_to_wait_here(handle)
        task = self.running.get(handle.task_id)
        if task is None or self.generation != _lifetime.generation:
            return timeout  # (in a forked process the answer is the parent's to read)
        deadline = None if timeout is None else time.monotonic() + timeout
        self.backend.read_here(task, deadline)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    # -- shutting down -----------------------------------------------------------------

    def close(self, cancel_pending: bool, workers: int) -> tuple[list[Task], list[Task]] | None:
        """Accept no more tasks: the tasks not ended, and those cancelled (None: closed already).

        ``cancel_pending`` cancels what waits, but for the oldest tasks that the
        ``workers`` not yet busy would have started by now - workers still
        starting, or a task submitted a moment ago - as the standard pools treat
        the tasks in their call queue as started.
        """
        with self.lock:
            if self.state == CLOSED:
                return None
            self.state = CLOSING
            self._room.notify_all()  # blocked submitters learn that the pool is closing
            unfinished = (
                list(self.pending) + list(self.retrying.values()) + list(self.running.values())
            )
            cancelled: list[Task] = []
            if cancel_pending:
                keep = max(0, workers - len(self.running))
                cancelled = list(self.pending)[keep:] + list(self.retrying.values())
                for _ in range(len(self.pending) - keep):
                    self.pending.pop()
                self.retrying.clear()
        for task in cancelled:
            task.handle.cancel()
        return unfinished, cancelled

    def wait_for_end(self, deadline: float | None) -> list[Task]:
        """Wait for every task to end, at most until ``deadline``: those that did not."""
        inline = _settings.inline_mode
        if inline is not None:
            inline.before_wait()  # a deterministic mode's held tasks are this wait's too
        with self.lock:
            while self.pending or self.running or self.retrying:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self.changed.wait(remaining)
            stragglers = (
                list(self.pending) + list(self.retrying.values()) + list(self.running.values())
            )
            self.pending.clear()
            self.retrying.clear()
            self._engine_closed = True
        return stragglers

    def stop_straggler(self, task: Task) -> None:
        if task.handle.state is TaskState.PENDING:
            task.handle.cancel()
            return
        self.stop(task, stopped_at_shutdown(task, self.name), may_retry=False)

    def closed(self) -> None:
        self.timer.close()
        owner = self._owner()
        if owner is not None:
            _lifetime.idle(owner)
        self.state = CLOSED


def closed_message(pool: str) -> str:
    """Why a pool takes no more work, in the words code written for executors looks for."""
    if _lifetime.exiting:
        return (
            "cannot schedule new futures after interpreter shutdown: pool "
            f"{pool!r} was shut down as the program ends"
        )
    return (
        f"cannot schedule new futures after shutdown: pool {pool!r} is shut down; submit "
        "before shutdown() (inside its with-block), or create a new Pool"
    )


def _tell_breaker(breaker: CircuitBreaker | None, decision: Decision) -> None:
    if breaker is None or decision.breaker is None:
        return
    if decision.breaker == "success":
        breaker.record_success()
    elif decision.breaker == "failure":
        breaker.record_failure()
    else:
        breaker.release_trial()


def _terminal_state(error: BaseException) -> TaskState:
    if isinstance(error, TaskTimeoutError):
        return TaskState.TIMED_OUT
    if isinstance(error, TaskCancelledError):
        return TaskState.CANCELLED
    return TaskState.FAILED
