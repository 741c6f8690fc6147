"""Handle: the future of one task, and the one place its state changes.

A task moves through

    PENDING --> RUNNING --> SUCCEEDED | FAILED | CANCELLED | TIMED_OUT
     |  ^          |
     |  +----------+  a failed attempt that its retry policy runs again
     +------> CANCELLED | FAILED        (cancelled, or refused before it ran)

and every move goes through ``Handle._transition``. A move that the diagram
does not allow raises ``InvalidTransitionError``: the pool resolves races (a
result arriving after a cancel) before it asks for a move, so an illegal move
is a bug to see, never a silent no-op.

``Handle`` is a ``concurrent.futures.Future``, so ``concurrent.futures.wait``,
``as_completed`` and ``asyncio.wrap_future`` work on it unchanged.
"""

from __future__ import annotations

import concurrent.futures
import enum
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from .errors import TaskCancelledError

__all__ = ["Handle", "InvalidTransitionError", "TaskState"]

R = TypeVar("R")

logger = logging.getLogger("makeparallel")
_FUTURES_LOGGER = logging.getLogger("concurrent.futures")  # where Future logs its callbacks


class TaskState(enum.StrEnum):
    """Where a task is in its life. Compares equal to its lower-case name."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


_UNFINISHED = frozenset({TaskState.PENDING, TaskState.RUNNING})
_TERMINAL = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT}
)
_ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.RUNNING, TaskState.CANCELLED, TaskState.FAILED}),
    TaskState.RUNNING: _TERMINAL | {TaskState.PENDING},
}


_FUTURE_PENDING = concurrent.futures._base.PENDING
_FUTURE_RUNNING = concurrent.futures._base.RUNNING
_FUTURE_FINISHED = concurrent.futures._base.FINISHED
_FUTURE_DONE = frozenset(
    {
        concurrent.futures._base.CANCELLED,
        concurrent.futures._base.CANCELLED_AND_NOTIFIED,
        _FUTURE_FINISHED,
    }
)
_NOWHERE: frozenset[TaskState] = frozenset()  # no move leaves a terminal state
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})
_ids = itertools.count(1)


def next_task_id() -> int:
    """A task id unique within this process."""
    return next(_ids)


class _Condition(threading.Condition):
    """A Condition over the handle's own reentrant lock: 2 objects where a Future's makes 8.

    A pool keeps one per waiting task, and each object is one more for the
    garbage collector to traverse. threading.Condition stores five of the
    lock's bound methods on each instance; here they are methods of the
    class. The lock is reentrant, as a Future's is: ``concurrent.futures.wait``
    holds every future's condition and then asks a finished one for its
    exception, which takes the same lock again.
    """

    def __init__(self, lock: Any) -> None:  # not super().__init__: it adds them
        self._lock = lock
        self._waiters: deque[Any] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def _release_save(self) -> Any:
        return self._lock._release_save()

    def _acquire_restore(self, saved: Any) -> None:
        self._lock._acquire_restore(saved)

    def _is_owned(self) -> bool:
        return bool(self._lock._is_owned())


class InvalidTransitionError(RuntimeError):
    """A task was asked to make a state change its life cycle does not allow."""


# The pools (by their handles' canceller, one per pool) whose callbacks this thread is
# running now; callbacks can nest. A callback that waits for an unfinished task of the
# same pool blocks the thread that delivers that pool's results or runs its tasks.
_callbacks = threading.local()


def _refuse_to_wait_in_callback(handle: Handle[Any]) -> None:
    owners: tuple[object, ...] = getattr(_callbacks, "owners", ())
    if owners and handle._canceller in owners and not handle.done():
        raise RuntimeError(
            f"waiting for task {handle.task_id} ({handle.name}) inside a callback of another "
            "task of its pool blocks the thread that runs that pool's callbacks, and waits "
            "for ever when the task needs this thread: chain the next step with on_complete "
            "or add_done_callback instead, or wait in a thread of your own"
        )


def _enter_callback(handle: Handle[Any]) -> tuple[object, ...]:
    outer: tuple[object, ...] = getattr(_callbacks, "owners", ())
    if handle._canceller is not None:
        _callbacks.owners = (*outer, handle._canceller)
    return outer


def _reraise_ctrl_c(exc: BaseException) -> None:
    """A callback run in the program's main thread may be interrupted by a real Ctrl-C."""
    if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
        raise exc


class Handle(concurrent.futures.Future[R], Generic[R]):
    """The running (or finished) task returned by a ``@parallel`` call or ``Pool.submit``.

    ``result()`` (alias ``get()``) returns the value or re-raises the task's
    own exception; ``state``, ``elapsed`` and ``attempts`` describe it while
    it runs.
    """

    # Set by the pool that runs the task (observe.record): told of every move, under
    # the state lock. Class-level defaults: a handle made elsewhere has none.
    _observer: (
        Callable[[Handle[Any], TaskState, TaskState, float, BaseException | None], None] | None
    ) = None
    _function = ""  # the task's function, as metrics and events name it
    _tally: Any = None  # where the pool counts the function's tasks
    _queued_at = 0.0  # when the attempt to come was queued (monotonic)
    _call: Any = None  # (fn, args, kwargs), kept for rerun_inline (dropped on success; _rerun)

    def __init__(
        self,
        task_id: int | None = None,
        name: str = "task",
        metadata: Mapping[str, Any] | None = None,
        canceller: Callable[[Handle[Any]], bool] | None = None,
        reader: Callable[[Handle[Any], float | None], float | None] | None = None,
    ) -> None:
        # What Future.__init__ sets (the same six attributes in Python 3.11 to 3.14;
        # tests/test_api.py checks them against a fresh Future), with a lighter
        # condition: see _Condition. Its lock is also the handle's state lock.
        self._state_lock = threading.RLock()
        self._condition = _Condition(self._state_lock)
        self._state = _FUTURE_PENDING
        self._result: R | None = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[concurrent.futures.Future[R]], object]] = []
        self._task_id = next_task_id() if task_id is None else task_id
        self._name = name
        self._metadata: Mapping[str, Any] = (
            MappingProxyType(dict(metadata)) if metadata else _NO_METADATA
        )
        self._canceller = canceller
        self._reader = reader  # waits for a running task in result(); returns the time left
        self._task_state = TaskState.PENDING
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._attempts = 0
        self._worker: str | None = None
        self._progress: float | None = None
        self._progress_message: str | None = None
        self._progress_callbacks: list[Callable[[float], object]] | None = None  # on first use

    # -- what a user reads -------------------------------------------------

    @property
    def task_id(self) -> int:
        """Unique within this process."""
        return self._task_id

    @property
    def name(self) -> str:
        return self._name

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The metadata given at decoration or per call (read-only)."""
        return self._metadata

    @property
    def state(self) -> TaskState:
        return self._task_state

    @property
    def attempts(self) -> int:
        """How many times the task has been started (0 while it waits)."""
        return self._attempts

    @property
    def elapsed(self) -> float | None:
        """Seconds the task has run (monotonic clock); None before it starts."""
        started = self._started_at
        if started is None:
            return None
        ended = self._ended_at
        return (ended if ended is not None else time.monotonic()) - started

    @property
    def progress(self) -> float | None:
        """The latest fraction in [0, 1] the task reported, None before any report."""
        return self._progress

    @property
    def progress_message(self) -> str | None:
        return self._progress_message

    @property
    def worker(self) -> str | None:
        """Where the task runs or ran: ``"pid 1234"`` for a process, a thread's name."""
        return self._worker

    def get(self, timeout: float | None = None) -> R:
        """Same as ``result()``."""
        return self.result(timeout)

    def result(self, timeout: float | None = None) -> R:
        with self._state_lock:
            if self._state is _FUTURE_FINISHED and self._exception is None:
                return self._result  # type: ignore[return-value]  # what Future.result does
        if self._reader is not None and self._task_state in _UNFINISHED:
            timeout = self._reader(self, timeout)
        _refuse_to_wait_in_callback(self)
        try:
            return super().result(timeout)
        except concurrent.futures.CancelledError as exc:
            if isinstance(exc, TaskCancelledError):
                raise
            raise self._cancelled_error() from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._reader is not None and self._task_state in _UNFINISHED:
            timeout = self._reader(self, timeout)
        _refuse_to_wait_in_callback(self)
        try:
            exc = super().exception(timeout)
        except concurrent.futures.CancelledError as cancelled:
            if isinstance(cancelled, TaskCancelledError):
                raise
            raise self._cancelled_error() from None
        if isinstance(exc, TaskCancelledError) and self._task_state is TaskState.CANCELLED:
            raise exc
        return exc

    def cancelled(self) -> bool:
        return self._task_state is TaskState.CANCELLED or super().cancelled()

    def cancel(self) -> bool:
        """Cancel the task. A waiting task never starts; a running one is stopped if its
        engine can stop it (the process engine kills and replaces its worker).

        Returns True when the task is now cancelled.
        """
        if self._canceller is None:
            return self._cancel_as_future()
        with self._state_lock:
            state = self._task_state
        if state is TaskState.PENDING:
            if self._try_transition(TaskState.PENDING, TaskState.CANCELLED):
                if super().running():  # waiting for a retry
                    super().set_exception(self._cancelled_error())
                else:
                    super().cancel()
                    super().set_running_or_notify_cancel()
                if self._canceller is not None:
                    self._canceller(self)  # lets the pool forget a scheduled retry
                return True
            return self.cancel()  # it started meanwhile
        if state is TaskState.RUNNING and self._canceller is not None:
            return self._canceller(self)
        return state is TaskState.CANCELLED

    # -- callbacks ---------------------------------------------------------

    def on_complete(self, callback: Callable[[R], object]) -> Handle[R]:
        """Call ``callback(result)`` when the task succeeds (at once if it already has)."""
        if not callable(callback):
            raise TypeError(f"on_complete needs a callable, got {type(callback).__name__}")

        def fire(handle: concurrent.futures.Future[R]) -> None:
            if self._task_state is TaskState.SUCCEEDED:
                self._run_callback(callback, handle.result())

        self.add_done_callback(fire)
        return self

    def on_error(self, callback: Callable[[BaseException], object]) -> Handle[R]:
        """Call ``callback(exception)`` when the task fails, times out or is cancelled."""
        if not callable(callback):
            raise TypeError(f"on_error needs a callable, got {type(callback).__name__}")

        def fire(_: concurrent.futures.Future[R]) -> None:
            if self._task_state is TaskState.SUCCEEDED:
                return
            try:
                exc = self.exception()
            except TaskCancelledError as cancelled:
                exc = cancelled
            if exc is not None:
                self._run_callback(callback, exc)

        self.add_done_callback(fire)
        return self

    def on_progress(self, callback: Callable[[float], object]) -> Handle[R]:
        """Call ``callback(fraction)`` on each progress update (at once with the latest one)."""
        if not callable(callback):
            raise TypeError(f"on_progress needs a callable, got {type(callback).__name__}")
        with self._state_lock:
            if self._progress_callbacks is None:
                self._progress_callbacks = []
            self._progress_callbacks.append(callback)
            latest = self._progress
        if latest is not None:
            self._run_callback(callback, latest)
        return self

    def _set_progress(self, value: float, message: str | None) -> None:
        with self._state_lock:
            if self._task_state is not TaskState.RUNNING:
                return  # a late update from a stopped attempt
            self._progress = value
            self._progress_message = message
            callbacks = list(self._progress_callbacks or ())
        for callback in callbacks:
            self._run_callback(callback, value)

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[R]], object]) -> None:
        """As ``Future.add_done_callback``; an exception from ``fn``, whatever it is, is
        logged as ``Future`` logs it: a callback never harms the pool or its threads."""
        with self._state_lock:
            if self._state not in _FUTURE_DONE:
                self._done_callbacks.append(fn)
                return
        self._call_done_callback(fn)

    def _invoke_callbacks(self) -> None:
        for callback in self._done_callbacks:
            self._call_done_callback(callback)

    def _call_done_callback(self, fn: Callable[[concurrent.futures.Future[R]], object]) -> None:
        outer = _enter_callback(self)
        try:
            fn(self)
        except BaseException as exc:
            _reraise_ctrl_c(exc)
            _FUTURES_LOGGER.error(
                "exception calling callback for %r",
                self,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        finally:
            _callbacks.owners = outer

    def _run_callback(self, callback: Callable[[Any], object], value: object) -> None:
        outer = _enter_callback(self)
        try:
            callback(value)
        except BaseException as exc:
            _reraise_ctrl_c(exc)
            logger.error(
                "callback %r of task %s (%s) raised; the task and the pool are unaffected",
                callback,
                self._task_id,
                self._name,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        finally:
            _callbacks.owners = outer

    def rerun_inline(self) -> R:
        """Run the finished task's function again, here, with the same arguments.

        Returns its result or raises its exception (with the real traceback), so a
        ``breakpoint()`` in the function stops in this process. Arguments are kept
        for tasks that did not succeed; for succeeded ones only in debug mode.
        """
        from ._rerun import rerun

        return rerun(self)  # type: ignore[no-any-return]

    def __await__(self) -> Generator[Any, None, R]:
        """``await handle`` on asyncio, trio or anyio; cancelling the awaiting task cancels
        the task (``asyncio.shield(handle)`` keeps it running)."""
        from ._awaiting import result_of

        return result_of(self).__await__()

    def __repr__(self) -> str:
        # The form every Future has (tools and tests read it); str() names the task.
        return concurrent.futures.Future.__repr__(self)

    def __str__(self) -> str:
        return f"task {self._task_id} ({self._name}): {self._task_state}"

    # -- a Handle used as a plain Future (no pool behind it) -----------------

    def _cancel_as_future(self) -> bool:
        if not super().cancel():
            return False
        with self._state_lock:
            if self._task_state is TaskState.PENDING:
                self._move(TaskState.CANCELLED)
        return True

    def set_running_or_notify_cancel(self) -> bool:
        started = super().set_running_or_notify_cancel()
        with self._state_lock:
            if started and self._task_state is TaskState.PENDING:
                self._move(TaskState.RUNNING)
        return started

    def set_result(self, result: R) -> None:
        super().set_result(result)  # InvalidStateError if it has ended, as a Future's
        self._ended_as(TaskState.SUCCEEDED)

    def set_exception(self, exception: BaseException | None) -> None:
        super().set_exception(exception)
        self._ended_as(TaskState.FAILED)

    def _ended_as(self, state: TaskState) -> None:
        with self._state_lock:
            if self._task_state is TaskState.PENDING:
                self._move(TaskState.RUNNING)
            if self._task_state is TaskState.RUNNING:
                self._move(state)

    # -- transitions, called by the pool only -----------------------------

    def _try_transition(self, expected: TaskState, new: TaskState) -> bool:
        """Move ``expected -> new`` if the task is still in ``expected``."""
        with self._state_lock:
            if self._task_state is not expected:
                return False
            self._move(new)
            return True

    def _transition(self, new: TaskState, error: BaseException | None = None) -> None:
        with self._state_lock:
            self._move(new, error)

    def _move(self, new: TaskState, error: BaseException | None = None) -> None:
        """Called with the state lock held."""
        current = self._task_state
        if new not in _ALLOWED.get(current, _NOWHERE):
            raise InvalidTransitionError(f"a task cannot move from {current} to {new}")
        self._task_state = new
        now = time.monotonic()
        if new is TaskState.RUNNING:
            self._started_at = now
            self._attempts += 1
        elif new in _TERMINAL:
            self._ended_at = now
        observer = self._observer
        if observer is not None:
            observer(self, current, new, now, error)

    def _start(self, worker: str | None = None) -> bool:
        """PENDING -> RUNNING; False if the task was cancelled while it waited."""
        with self._state_lock:
            if self._task_state is not TaskState.PENDING:
                return False
            self._move(TaskState.RUNNING)
            # What Future.set_running_or_notify_cancel does for a pending future, under
            # the same lock; a retry finds the Future running already.
            self._state = _FUTURE_RUNNING
        self._worker = worker
        return True

    def _retry(self) -> None:
        """RUNNING -> PENDING: this attempt failed and another one is scheduled."""
        # The Future itself stays "running": result() keeps waiting across attempts.
        self._transition(TaskState.PENDING)

    def _succeed(self, value: R) -> None:
        # What Future.set_result does, under the same single lock as the move (the
        # move refuses a task that has ended, so the Future cannot have ended either),
        # and no notify when no thread waits.
        with self._state_lock:
            self._move(TaskState.SUCCEEDED)
            self._result = value
            self._state = _FUTURE_FINISHED
            for waiter in self._waiters:
                waiter.add_result(self)
            if self._condition._waiters:  # type: ignore[attr-defined]
                self._condition.notify_all()
        self._invoke_callbacks()

    def _fail(self, exc: BaseException, state: TaskState = TaskState.FAILED) -> None:
        """Finish with ``exc``: FAILED, TIMED_OUT, or CANCELLED for a stopped running task."""
        self._transition(state, exc)
        super().set_exception(exc)

    def _cancelled_error(self) -> TaskCancelledError:
        return TaskCancelledError(
            f"task {self._task_id} ({self._name}) was cancelled",
            task_id=self._task_id,
            task_name=self._name,
        )
