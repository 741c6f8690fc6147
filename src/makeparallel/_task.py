"""What the pool hands to an engine, and how a failure becomes the exception the user sees.

A ``Task`` is one call (or one chunk of a map) plus its handle. The
functions below turn what went wrong - an exception raised in this process,
a description sent back by a worker process, a dead worker - into the
exception that ``Handle.result()`` raises, always carrying the same context:
task id and name, function, worker, attempt, a short repr of the arguments.
"""

from __future__ import annotations

import contextvars
import signal
import threading
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._worker import serialize
from .errors import RemoteTraceback, SerializationError, TaskError, WorkerCrashedError
from .handle import Handle

if TYPE_CHECKING:
    from ._timer import TimerEntry
    from .observe.sampling import Sample
    from .policies import CircuitBreaker, Retry

_event_lock = threading.Lock()


# What a map chunk returns: the values in item order (None where an item failed),
# {offset: exception}, and the seconds the items took to run (None if not measured).
ChunkValue = tuple[list[Any], dict[int, BaseException], float | None]


def unwrap_parallel(fn: Callable[..., Any]) -> tuple[Callable[..., Any], bytes | None]:
    """The plain function behind a ``@parallel`` wrapper, and the wrapper pickled by reference."""
    if getattr(type(fn), "_makeparallel_wrapper", False):
        return fn.__wrapped__, fn._reference_bytes()  # type: ignore[attr-defined]
    return fn, None


class Task:
    """One unit of work.

    ``items`` is set for a map chunk: ``fn(item)`` runs once per item (``fn(*item)``
    when ``star``), and the task's value is a ``ChunkValue``. (A plain class: one
    is made per submit, and a dataclass would make ``import makeparallel`` import
    ``inspect``.)
    """

    __slots__ = (
        "_cancel_event",
        "args",
        "args_data",
        "attempt",
        "breaker",
        "ctx_data",
        "deadline_entry",
        "first_index",
        "fn",
        "fn_data",
        "fn_key",
        "handle",
        "id",
        "items",
        "kwargs",
        "profile",
        "retry",
        "retry_entry",
        "star",
        "stop_error",
        "submit_context",
        "timeout",
        "trace",
        "worker",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        handle: Handle[Any],
        items: list[Any] | None = None,
        star: bool = False,
        first_index: int = 0,
        timeout: float | None = None,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        attempt: int = 1,
        fn_data: bytes | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.handle = handle
        self.items = items
        self.star = star
        self.first_index = first_index
        self.timeout = timeout
        self.retry = retry
        self.breaker = breaker
        self.attempt = attempt
        # filled by the process engine
        self.fn_data = fn_data
        self.fn_key = 0  # the function's key: sent once to each worker, named by this later
        self.args_data: tuple[bytes | bytearray | memoryview, ...] | None = None  # a wire blob
        self.ctx_data: bytes | None = None
        self.worker: str | None = None
        # set when the task was stopped on purpose (timeout, cancel, shutdown):
        # the error to report instead of "the worker crashed"
        self.stop_error: BaseException | None = None
        self.deadline_entry: TimerEntry | None = None
        self.retry_entry: TimerEntry | None = None  # when this (next) attempt is due
        self._cancel_event: threading.Event | None = None
        self.profile: Sample | None = None  # set while a profile is active (observe.sampling)
        # the submitter's contextvars, for engines that run the task in this process
        self.submit_context: contextvars.Context | None = None
        # the trace context of the task's span (observe.otel), as W3C headers
        self.trace: dict[str, str] | None = None
        self.id = handle.task_id  # the handle's task id, read on every hop

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.function_name()} attempt {self.attempt}>"

    @property
    def cancel_event(self) -> threading.Event:
        """Tells a task on a thread that it should stop (threads cannot be killed).

        Made on first use: process tasks never need one.
        """
        event = self._cancel_event
        if event is None:
            with _event_lock:
                if self._cancel_event is None:
                    self._cancel_event = threading.Event()
                event = self._cancel_event
        return event

    def may_wait(self) -> bool:
        """The timeout rule: whether this task may wait behind another one on a worker.

        A timeout's clock starts when the task is handed out, so a task with a
        timeout only ever goes to a worker that starts it at once.
        """
        return self.timeout is None

    def assign(self, worker: str) -> None:
        """Record where this attempt runs (also on the handle, for the user)."""
        self.worker = worker
        self.handle._worker = worker

    def next_attempt(self) -> Task:
        """A fresh copy for the next attempt: same call and prepared bytes, new run state."""
        fresh = Task(
            self.fn,
            self.args,
            self.kwargs,
            self.handle,
            self.items,
            self.star,
            self.first_index,
            self.timeout,
            self.retry,
            self.breaker,
            self.attempt + 1,
            self.fn_data,
        )
        fresh.fn_key, fresh.args_data, fresh.ctx_data = self.fn_key, self.args_data, self.ctx_data
        if self.profile is not None:
            fresh.profile = self.profile.again()
        fresh.submit_context, fresh.trace = self.submit_context, self.trace
        return fresh

    def function_name(self) -> str:
        return qualified_name(self.fn)

    def context(self, worker: str | None = None) -> dict[str, Any]:
        return {
            "task_id": self.id,
            "task_name": self.handle.name,
            "function": self.function_name(),
            "worker_pid": pid_of(worker or self.worker),
            "attempt": self.attempt,
            "args_repr": serialize.short_call_repr(self.args, self.kwargs),
        }

    def describe(self) -> str:
        return f"task {self.id} ({self.handle.name})"


def short_name(fn: Callable[..., Any]) -> str:
    """A task's default name: its function's qualified name."""
    return getattr(fn, "__qualname__", None) or qualified_name(fn)


def qualified_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{module}.{name}"


def pid_of(worker: str | None) -> int | None:
    """The pid in a process worker's label ("pid 1234"); None for other workers."""
    if worker and worker.startswith("pid "):
        return int(worker[4:])
    return None


def context_note(task: Task, worker: str | None, item: int | None = None) -> str:
    where = f"in worker {worker}" if worker else "inline"
    what = f"item {item} of a map over {task.function_name()}" if item is not None else None
    if task.items is not None and item is not None:
        value = task.items[item - task.first_index]
        args = serialize.short_call_repr(tuple(value) if task.star else (value,), {})
    else:
        args = serialize.short_call_repr(task.args, task.kwargs)
    attempt = task.attempt
    label = what or f"{task.function_name()}{args}"
    return f"makeparallel: {task.describe()} failed {where}, attempt {attempt}: {label}" + (
        f" with arguments {args}" if what else ""
    )


def annotate(exc: BaseException, note: str) -> BaseException:
    """Attach the task context to the user's own exception as a PEP 678 note."""
    try:
        exc.add_note(note)
    except (AttributeError, TypeError):
        pass
    return exc


def from_remote(task: Task, blob: bytes, worker: str, item: int | None = None) -> BaseException:
    """Rebuild the exception a worker process described with ``_worker.remote_error``."""
    type_name, message, text, exc_bytes, phase, why_not, value_type = serialize.loads(blob)
    context = task.context(worker)
    if phase == "load":
        return _with_cause(
            SerializationError(
                f"{task.describe()}: the worker could not unpickle the function or its "
                f"arguments ({type_name}: {message}); make sure what you pass can be "
                "imported in a fresh interpreter",
                **context,
            ),
            text,
        )
    if phase == "dump":
        return _with_cause(
            SerializationError(
                f"{task.describe()}: {task.function_name()} returned a {value_type} that "
                f"cannot be pickled ({type_name}: {message}); return plain data instead",
                **context,
            ),
            text,
        )
    if exc_bytes is not None:
        try:
            exc: BaseException = serialize.loads(exc_bytes)
        except BaseException as problem:  # SystemExit from a __reduce__ too
            why_not = f"{type(problem).__name__}: {problem}"
        else:
            return annotate(_with_cause(exc, text, task.fn), context_note(task, worker, item))
    return _with_cause(
        TaskError(
            f"{task.describe()} raised {type_name}: {message} (the exception itself could "
            f"not be sent back: {why_not})",
            **context,
        ),
        text,
    )


def _with_cause(exc: BaseException, remote_text: str, fn: Any = None) -> BaseException:
    exc.__cause__ = RemoteTraceback(_restore_filename(remote_text, fn))
    return exc


def _restore_filename(text: str, fn: Any) -> str:
    # cloudpickle ships functions defined in __main__ by value under the file name
    # "<dynamic-code>"; put the script's name back so the traceback points at it.
    code = getattr(fn, "__code__", None)
    if code is None or getattr(fn, "__module__", None) != "__main__":
        return text
    return text.replace('File "<dynamic-code>"', f'File "{code.co_filename}"')


def worker_crashed(task: Task, worker: str, returncode: int | None) -> WorkerCrashedError:
    how, signal_name = describe_exit(returncode)
    error = WorkerCrashedError(
        f"{task.describe()} was running in worker {worker}, which {how}", **task.context(worker)
    )
    error.exitcode = returncode
    error.signal_name = signal_name
    return error


def stopped_at_shutdown(task: Task, pool: str) -> TaskError:
    """What a task still running at a shutdown's deadline fails with."""
    return TaskError(
        f"{task.describe()} was stopped: pool {pool!r} shut down before it finished",
        **task.context(),
    )


def describe_exit(returncode: int | None) -> tuple[str, str | None]:
    if returncode is None:
        return f"ended; its exit status is lost{_why_status_lost()}", None
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = (
            " from outside the pool (the system's out-of-memory killer, a CPU-time limit, "
            "or a person may send it)"
            if name == "SIGKILL"
            else ""
        )
        return f"was killed by {name}{hint}", name
    return f"exited with code {returncode}", None


def _why_status_lost() -> str:
    chld = getattr(signal, "SIGCHLD", None)
    if chld is None or signal.getsignal(chld) in (signal.SIG_DFL, None):
        return ""
    return (
        " (this program ignores or handles SIGCHLD, so its child processes are reaped "
        "before the pool can read how they ended)"
    )


def unpicklable_arguments(task: Task, problem: BaseException) -> SerializationError:
    what = (
        serialize.describe_unpicklable(tuple(task.items or ()), {})
        if task.items is not None
        else serialize.describe_unpicklable(task.args, task.kwargs)
    )
    values = [*(task.items or ()), *task.args, *task.kwargs.values()]
    fix = (
        "a generator cannot travel to another process: pass list(...) of its values, "
        "or hand it to mp.imap(fn, generator), which sends its items one by one"
        if any(isinstance(value, types.GeneratorType) for value in values)
        else "pass plain data, or use backend='thread'"
    )
    return SerializationError(
        f"{task.describe()}: cannot send {what} to a worker process; {fix}", **task.context()
    )


def unpicklable_function(task: Task, problem: BaseException) -> SerializationError:
    return SerializationError(
        f"{task.describe()}: cannot send the function {task.function_name()} to a worker "
        f"process ({type(problem).__name__}: {problem}); define it at module level, or "
        "use backend='thread'",
        **task.context(),
    )
