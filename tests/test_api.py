"""The public API: @parallel, Handle, Pool, configure, the engines."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import makeparallel as mp
from polling import wait_for_file

DEADLINE = 10.0


# -- functions workers import by name (module level) -------------------------------


def square(x: int) -> int:
    return x * x


def fail_with(message: str) -> None:
    raise ValueError(message)


def pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def wait_for(release: threading.Event, started: threading.Event | None = None) -> bool:
    """Block (thread engine only) until the test sets ``release``; True if it did in time."""
    if started is not None:
        started.set()
    return release.wait(DEADLINE)


def thread_ident() -> int:
    return threading.get_ident()


@mp.parallel
def bare_pid_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


@mp.parallel
def bare_wait(release: threading.Event) -> bool:
    return release.wait(DEADLINE)


@mp.parallel(name="resize", metadata={"user": "u1"}, backend="thread")
def with_options(x: int) -> int:
    return x + 1


@mp.parallel(backend="thread")
def takes_option_names(
    name: str, metadata: Any = None, backend: Any = None, pool: Any = None
) -> tuple[Any, ...]:
    return name, metadata, backend, pool


# -- helpers ----------------------------------------------------------------------


class Blocker:
    """Occupy the only worker of a one-worker thread pool until released."""

    def __init__(self, pool: mp.Pool) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.handle = pool.submit(wait_for, self.release, self.started)
        assert self.started.wait(DEADLINE), "the blocking task never started"

    def finish(self) -> None:
        self.release.set()
        assert self.handle.result(DEADLINE) is True


@pytest.fixture
def blocked(one_thread_pool: mp.Pool) -> Iterator[Blocker]:
    blocker = Blocker(one_thread_pool)
    try:
        yield blocker
    finally:
        blocker.release.set()
        blocker.handle.result(DEADLINE)


# -- @parallel ----------------------------------------------------------------------


def test_bare_decorator_runs_on_worker_processes_by_default(
    reset_default_pool: None,
) -> None:
    handle = bare_pid_square(7)

    assert isinstance(handle, mp.Handle)
    pid, value = handle.result(DEADLINE)
    assert value == 49
    assert pid != os.getpid()


def test_bare_decorator_returns_a_handle_at_once(reset_default_pool: None) -> None:
    mp.configure(backend="thread")
    release = threading.Event()

    handle = bare_wait(release)
    try:
        assert isinstance(handle, mp.Handle)
        assert not handle.done()  # the call did not wait for the task
    finally:
        release.set()
    assert handle.result(DEADLINE) is True


def test_decorator_with_options_names_the_task_and_keeps_metadata() -> None:
    handle = with_options(1)

    assert handle.result(DEADLINE) == 2
    assert handle.name == "resize"
    assert dict(handle.metadata) == {"user": "u1"}


def test_decorator_with_thread_backend_returns_at_once_and_runs_in_this_process() -> None:
    release = threading.Event()
    started = threading.Event()
    fn = mp.parallel(backend="thread")(wait_for)

    handle = fn(release, started)
    try:
        assert started.wait(DEADLINE)
        assert not handle.done()
        assert handle.running()
    finally:
        release.set()
    assert handle.result(DEADLINE) is True


def test_decorator_with_pool_submits_to_that_pool(one_thread_pool: mp.Pool) -> None:
    fn = mp.parallel(pool=one_thread_pool)(threading.current_thread)

    thread = fn().result(DEADLINE)

    assert thread.name.startswith("tests-one-thread")


def test_default_name_is_the_function_name() -> None:
    fn = mp.parallel(backend="serial")(square)

    handle = fn(3)

    assert handle.name == "square"
    assert handle.result(DEADLINE) == 9


def test_options_set_name_and_metadata_for_one_call_only() -> None:
    handle = with_options.options(name="thumb", metadata={"size": 64})(1)
    later = with_options(2)

    assert handle.name == "thumb"
    assert dict(handle.metadata) == {"user": "u1", "size": 64}
    assert handle.result(DEADLINE) == 2
    assert later.name == "resize"
    assert dict(later.metadata) == {"user": "u1"}
    assert later.result(DEADLINE) == 3


def test_options_are_never_mixed_into_the_functions_own_arguments() -> None:
    handle = takes_option_names.options(name="task-name", metadata={"m": 1})(
        "alice", metadata="user-metadata", backend="user-backend", pool="user-pool"
    )

    assert handle.result(DEADLINE) == ("alice", "user-metadata", "user-backend", "user-pool")
    assert handle.name == "task-name"
    assert dict(handle.metadata) == {"m": 1}

    plain = takes_option_names(name="bob")
    assert plain.result(DEADLINE) == ("bob", None, None, None)
    assert plain.name == "takes_option_names"


def test_wrapped_runs_the_plain_function_inline() -> None:
    assert with_options.__wrapped__(41) == 42
    inline = mp.parallel(backend="thread")(thread_ident)
    assert inline.__wrapped__() == threading.get_ident()


def test_decorated_function_keeps_its_name_and_doc() -> None:
    def documented(x: int) -> int:
        """Docstring kept."""
        return x

    fn = mp.parallel(documented)

    assert fn.__name__ == "documented"
    assert fn.__doc__ == "Docstring kept."


# -- Handle is a Future, Pool is an Executor ----------------------------------------------


def test_handle_is_a_future_and_pool_is_an_executor(thread_pool: mp.Pool) -> None:
    handles = [thread_pool.submit(square, n) for n in range(5)]

    assert isinstance(thread_pool, concurrent.futures.Executor)
    assert all(isinstance(h, concurrent.futures.Future) for h in handles)
    done, not_done = concurrent.futures.wait(handles, timeout=DEADLINE)
    assert done == set(handles)
    assert not not_done
    completed = list(concurrent.futures.as_completed(handles, timeout=DEADLINE))
    assert sorted(h.result() for h in completed) == [0, 1, 4, 9, 16]


def test_a_handle_sets_up_every_attribute_a_future_does() -> None:
    # Handle.__init__ sets the Future's attributes itself (with a lighter condition):
    # a Python release that adds one must fail here, not in a user's wait().
    from makeparallel.handle import Handle

    plain = concurrent.futures.Future[int]()
    handle = Handle[int](1, "task")
    assert set(vars(plain)) <= set(vars(handle))
    for name, value in vars(plain).items():
        assert isinstance(getattr(handle, name), type(value)), name
    # Its lighter condition has every instance attribute a Condition's methods use.
    condition = threading.Condition(threading.Lock())
    assert set(vars(condition)) - {"acquire", "release"} <= set(vars(handle._condition))


def test_handle_can_be_awaited_and_wrapped_for_asyncio(thread_pool: mp.Pool) -> None:
    async def main() -> tuple[int, int]:
        awaited = await thread_pool.submit(square, 6)
        wrapped = await asyncio.wait_for(
            asyncio.wrap_future(thread_pool.submit(square, 7)), DEADLINE
        )
        return awaited, wrapped

    assert asyncio.run(main()) == (36, 49)


def test_awaiting_a_failed_handle_raises_the_tasks_exception(thread_pool: mp.Pool) -> None:
    async def main() -> None:
        await thread_pool.submit(fail_with, "async boom")

    with pytest.raises(ValueError, match="async boom"):
        asyncio.run(main())


# -- what a Handle tells ------------------------------------------------------------------


def test_task_ids_are_unique_across_pools(serial_pool: mp.Pool, thread_pool: mp.Pool) -> None:
    handles = [serial_pool.submit(square, n) for n in range(50)]
    handles += [thread_pool.submit(square, n) for n in range(50)]

    ids = [h.task_id for h in handles]

    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, int) for i in ids)


def test_metadata_is_read_only(serial_pool: mp.Pool) -> None:
    given = {"user": "u1"}
    handle = mp.parallel(pool=serial_pool, metadata=given)(square)(2)
    given["user"] = "changed afterwards"

    assert handle.metadata["user"] == "u1"
    with pytest.raises(TypeError):
        handle.metadata["user"] = "u2"  # type: ignore[index]
    with pytest.raises(AttributeError):
        handle.metadata = {}  # type: ignore[misc]
    assert handle.metadata["user"] == "u1"


def test_handle_without_metadata_has_an_empty_mapping(serial_pool: mp.Pool) -> None:
    assert dict(serial_pool.submit(square, 2).metadata) == {}


def test_state_moves_pending_running_succeeded(one_thread_pool: mp.Pool, blocked: Blocker) -> None:
    release = threading.Event()
    started = threading.Event()
    try:
        handle = one_thread_pool.submit(wait_for, release, started)
        assert blocked.handle.state == mp.TaskState.RUNNING
        assert handle.state == mp.TaskState.PENDING
        assert handle.state == "pending"
        assert not handle.running()
        assert handle.elapsed is None
        assert handle.attempts == 0

        blocked.finish()
        assert started.wait(DEADLINE)
        assert handle.state == "running"
        assert handle.running()
        assert handle.attempts == 1
        first = handle.elapsed
        assert first is not None
        assert first >= 0
        second = handle.elapsed
        assert second is not None
        assert second >= first
    finally:
        release.set()

    assert handle.result(DEADLINE) is True
    assert handle.state == "succeeded"
    assert handle.done()
    assert not handle.running()
    assert handle.attempts == 1
    final = handle.elapsed
    assert final is not None
    assert final >= second
    assert handle.elapsed == final  # the clock stopped when the task ended


def test_state_of_a_failed_task(thread_pool: mp.Pool) -> None:
    handle = thread_pool.submit(fail_with, "nope")

    with pytest.raises(ValueError, match="nope"):
        handle.result(DEADLINE)
    assert handle.state == "failed"
    assert isinstance(handle.exception(), ValueError)
    assert not handle.cancelled()
    assert handle.attempts == 1


def test_get_is_an_alias_of_result(thread_pool: mp.Pool) -> None:
    handle = thread_pool.submit(square, 12)

    assert handle.get(DEADLINE) == 144
    assert handle.get() == handle.result()


def test_result_timeout_raises_timeout_error(blocked: Blocker) -> None:
    with pytest.raises(TimeoutError):
        blocked.handle.result(timeout=0.01)
    assert not blocked.handle.done()


# -- callbacks -----------------------------------------------------------------------------


def test_on_complete_fires_without_anyone_calling_result(thread_pool: mp.Pool) -> None:
    release = threading.Event()
    fired = threading.Event()
    seen: list[Any] = []

    def record(value: Any) -> None:
        seen.append(value)
        fired.set()

    handle = thread_pool.submit(wait_for, release)
    returned = handle.on_complete(record)
    assert returned is handle  # chainable
    assert not fired.is_set()
    release.set()

    assert fired.wait(DEADLINE)
    assert seen == [True]


def test_on_error_fires_with_the_exception_and_on_complete_does_not(
    thread_pool: mp.Pool,
) -> None:
    release = threading.Event()
    failed = threading.Event()
    errors: list[BaseException] = []
    completions: list[Any] = []

    def failing(release: threading.Event) -> None:
        release.wait(DEADLINE)
        raise KeyError("lost")

    def record(exc: BaseException) -> None:
        errors.append(exc)
        failed.set()

    handle = thread_pool.submit(failing, release).on_complete(completions.append).on_error(record)
    release.set()

    assert failed.wait(DEADLINE)
    assert len(errors) == 1
    assert isinstance(errors[0], KeyError)
    assert errors[0] is handle.exception(DEADLINE)
    assert completions == []


def test_on_error_does_not_fire_for_a_success(serial_pool: mp.Pool) -> None:
    errors: list[BaseException] = []
    values: list[int] = []

    serial_pool.submit(square, 5).on_error(errors.append).on_complete(values.append)

    assert values == [25]
    assert errors == []


def test_callbacks_fire_for_process_tasks(process_pool: mp.Pool) -> None:
    fired = threading.Event()
    seen: list[Any] = []

    def record(value: Any) -> None:
        seen.append(value)
        fired.set()

    process_pool.submit(square, 9).on_complete(record)

    assert fired.wait(DEADLINE)
    assert seen == [81]


def test_waiting_inside_a_callback_on_the_io_thread_fails_at_once(
    process_pool: mp.Pool, tmp_path: Path
) -> None:
    # The I/O thread delivers results: a callback there that waited for one would
    # stall the whole pool for ever. It gets an error instead, and may still chain.
    done = threading.Event()
    seen: dict[str, Any] = {}

    def in_callback(_: Any) -> None:
        chained = process_pool.submit(square, 5)
        for what, wait in (
            ("result", lambda: chained.result(DEADLINE)),
            ("exception", lambda: chained.exception(DEADLINE)),
            ("map", lambda: process_pool.map(square, [1, 2])),
        ):
            try:
                wait()
            except RuntimeError as error:
                seen[what] = str(error)
        chained.on_complete(lambda value: (seen.setdefault("chained", value), done.set()))

    gate = tmp_path / "gate"
    first = process_pool.submit(wait_for_file, str(gate))
    first.on_complete(in_callback)  # before it can end; and no result(): the I/O thread reads
    gate.touch()

    assert done.wait(DEADLINE)
    assert seen["chained"] == 25
    for what in ("result", "exception", "map"):
        assert "would wait for ever" in seen[what], what
    assert process_pool.submit(square, 3).result(DEADLINE) == 9


def test_late_registration_fires_at_once(thread_pool: mp.Pool) -> None:
    ok = thread_pool.submit(square, 4)
    bad = thread_pool.submit(fail_with, "late")
    concurrent.futures.wait([ok, bad], timeout=DEADLINE)
    values: list[Any] = []
    errors: list[BaseException] = []

    ok.on_complete(values.append).on_error(errors.append)
    bad.on_complete(values.append).on_error(errors.append)

    assert values == [16]
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)
    assert str(errors[0]) == "late"


def test_an_exception_in_a_callback_is_logged_and_does_not_break_the_pool(
    thread_pool: mp.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    after = threading.Event()

    def broken_callback(value: Any) -> None:
        raise RuntimeError("callback exploded")

    caplog.set_level(logging.ERROR, logger="makeparallel")
    handle = thread_pool.submit(wait_for, release)
    handle.on_complete(broken_callback).on_complete(lambda _: after.set())
    release.set()

    assert after.wait(DEADLINE)  # callbacks run in order: the broken one ran first
    assert handle.result(DEADLINE) is True
    records = [r for r in caplog.records if r.name == "makeparallel"]
    assert records, "the callback's exception was not logged on the 'makeparallel' logger"
    assert records[0].levelno >= logging.ERROR
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)
    assert thread_pool.submit(square, 3).result(DEADLINE) == 9


# -- cancellation ------------------------------------------------------------------------


def test_cancel_a_pending_task(one_thread_pool: mp.Pool, blocked: Blocker) -> None:
    ran: list[int] = []
    errors: list[BaseException] = []
    victim = one_thread_pool.submit(ran.append, 1)
    victim.on_error(errors.append)
    assert victim.state == "pending"

    assert victim.cancel() is True

    assert victim.cancelled()
    assert victim.done()
    assert victim.state == "cancelled"
    with pytest.raises(mp.TaskCancelledError) as caught:
        victim.result(timeout=0)
    assert isinstance(caught.value, concurrent.futures.CancelledError)
    with pytest.raises(concurrent.futures.CancelledError):
        victim.result(timeout=0)
    assert len(errors) == 1
    assert isinstance(errors[0], mp.TaskCancelledError)
    assert victim.cancel() is True  # cancelling twice is harmless

    blocked.finish()
    assert one_thread_pool.submit(ran.append, 2).result(DEADLINE) is None
    assert ran == [2]  # the cancelled task never ran


def test_cancel_a_finished_task_returns_false(thread_pool: mp.Pool) -> None:
    handle = thread_pool.submit(square, 2)
    assert handle.result(DEADLINE) == 4

    assert handle.cancel() is False
    assert not handle.cancelled()
    assert handle.state == "succeeded"


# -- Pool -----------------------------------------------------------------------------------


def test_pool_submit_map_imap(thread_pool: mp.Pool) -> None:
    assert thread_pool.submit(square, 11).result(DEADLINE) == 121
    assert thread_pool.submit(int, "ff", base=16).result(DEADLINE) == 255
    assert list(thread_pool.map(square, range(10))) == [x * x for x in range(10)]
    assert list(thread_pool.imap(square, range(10))) == [x * x for x in range(10)]


def test_pool_as_context_manager_waits_for_its_tasks() -> None:
    with mp.Pool() as pool:
        handles = [pool.submit(pid_and_square, n) for n in range(4)]

    assert all(h.done() for h in handles)
    assert [h.result()[1] for h in handles] == [0, 1, 4, 9]
    assert all(h.result()[0] != os.getpid() for h in handles)
    with pytest.raises(RuntimeError):
        pool.submit(square, 1)


def test_submit_after_shutdown_raises_runtime_error() -> None:
    pool = mp.Pool(workers=1, backend="thread")
    pool.shutdown()

    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(square, 2)
    with pytest.raises(RuntimeError):
        pool.map(square, [1, 2])


def test_shutdown_waits_for_running_and_pending_tasks() -> None:
    pool = mp.Pool(workers=1, backend="thread")
    handles = [pool.submit(square, n) for n in range(5)]

    pool.shutdown(wait=True)

    assert [h.result(timeout=0) for h in handles] == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("option", ["cancel_pending", "cancel_futures"])
def test_shutdown_can_cancel_queued_tasks(option: str) -> None:
    pool = mp.Pool(workers=1, backend="thread")
    blocker = Blocker(pool)
    try:
        queued = [pool.submit(square, n) for n in range(3)]

        pool.shutdown(wait=False, **{option: True})

        assert all(h.cancelled() for h in queued)
        for handle in queued:
            with pytest.raises(mp.TaskCancelledError):
                handle.result(timeout=0)
        assert blocker.handle.state == "running"
        with pytest.raises(RuntimeError):
            pool.submit(square, 1)
    finally:
        blocker.release.set()
    assert blocker.handle.result(DEADLINE) is True  # the running task was not stopped
    pool.shutdown(wait=True)


# -- default pool and engines --------------------------------------------------------------


def test_configure_changes_the_default_pool(reset_default_pool: None) -> None:
    mp.configure(workers=1, backend="thread")
    first_release = threading.Event()
    second_release = threading.Event()

    first = bare_wait(first_release)
    second = bare_wait(second_release)
    try:
        # one worker thread: the second call waits behind the first
        assert second.state == "pending"
    finally:
        first_release.set()
        second_release.set()
    assert first.result(DEADLINE) is True
    assert second.result(DEADLINE) is True
    pid, value = bare_pid_square(3).result(DEADLINE)
    assert pid == os.getpid()
    assert value == 9


@pytest.mark.skipif(
    not getattr(sys, "_is_gil_enabled", lambda: True)(), reason="free-threaded build"
)
def test_the_process_engine_is_the_default_with_the_gil() -> None:
    with mp.Pool(workers=1) as pool:
        assert pool.backend == "process"
        pid, value = pool.submit(pid_and_square, 5).result(DEADLINE)
    assert pid != os.getpid()
    assert value == 25


def test_serial_backend_runs_inline_and_in_order(serial_pool: mp.Pool) -> None:
    order: list[int] = []

    def record(n: int) -> int:
        order.append(n)
        return threading.get_ident()

    handles = [serial_pool.submit(record, n) for n in range(5)]

    assert all(h.done() for h in handles)  # already ran, inside submit
    assert order == [0, 1, 2, 3, 4]
    assert {h.result() for h in handles} == {threading.get_ident()}


def test_serial_backend_runs_a_nested_submit_inline(serial_pool: mp.Pool) -> None:
    def outer() -> int:
        inner = serial_pool.submit(square, 3)
        # sequential code would have the value now; timeout=0 instead of hanging forever
        return inner.result(timeout=0) + 1

    assert serial_pool.submit(outer).result(DEADLINE) == 10


def test_serial_backend_via_the_decorator() -> None:
    fn = mp.parallel(backend="serial")(thread_ident)

    handle = fn()

    assert handle.done()
    assert handle.result() == threading.get_ident()


def test_pool_on_an_existing_executor() -> None:
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="borrowed") as executor:
        pool = mp.Pool(backend=executor)
        try:
            thread = pool.submit(threading.current_thread).result(DEADLINE)
            assert thread.name.startswith("borrowed")
            assert list(pool.map(square, range(6))) == [0, 1, 4, 9, 16, 25]
            with pytest.raises(ValueError, match="from executor"):
                pool.submit(fail_with, "from executor").result(DEADLINE)
        finally:
            pool.shutdown()
        # the pool does not own the executor: it still works
        assert executor.submit(square, 3).result(DEADLINE) == 9


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="interpreters exist on 3.14+")
def test_interpreter_backend_needs_python_3_14() -> None:
    with pytest.raises(ValueError, match=r"3\.14"):
        mp.Pool(workers=1, backend="interpreter")
