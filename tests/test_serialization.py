"""What crosses the process boundary: functions, arguments, results and exceptions."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import sys
import threading
from collections.abc import Iterator

import pytest

import makeparallel as mp
from makeparallel.errors import RemoteTraceback

DEADLINE = 10.0


# -- defined at module level: workers import these by name --------------------------------


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


def module_level(x: int) -> int:
    return x + 100


@mp.parallel
def decorated(x: int) -> int:
    return x * 3


def norm_of(point: Point) -> int:
    return point.norm1()


def make_point(x: int, y: int) -> Point:
    return Point(x, y)


def worker_pid() -> int:
    return os.getpid()


def identity(value: object) -> object:
    return value


def return_a_lock() -> object:
    return threading.Lock()


def _numbers() -> Iterator[int]:
    yield 1


def return_a_generator() -> object:
    return _numbers()


class TwoArgumentError(Exception):
    """Pickles, but cannot be rebuilt: unpickling calls ``TwoArgumentError(message)``."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code
        self.detail = detail


def raise_two_argument_error() -> None:
    raise TwoArgumentError(7, "disk on fire")


def raise_chained_error() -> None:
    raise ValueError("outer") from KeyError("inner")


def fail_on_lock_items(value: object) -> str:
    return type(value).__name__


@pytest.fixture(scope="module")
def pool() -> Iterator[mp.Pool]:
    """One worker process, so the note about where a task ran names a pid we can know."""
    pool = mp.Pool(workers=1, backend="process", name="tests-serialization")
    yield pool
    pool.shutdown(wait=True, cancel_pending=True, timeout=DEADLINE)


# -- the worker sees the test modules --------------------------------------------------------


def test_workers_can_import_the_test_modules(pool: mp.Pool) -> None:
    assert pool.submit(module_level, 1).result(DEADLINE) == 101
    assert pool.submit(worker_pid).result(DEADLINE) != os.getpid()
    assert os.path.dirname(__file__) in sys.path


# -- functions --------------------------------------------------------------------------------


def test_lambda(pool: mp.Pool) -> None:
    assert pool.submit(lambda x: x * 2, 21).result(DEADLINE) == 42


def test_closure_over_a_local_variable(pool: mp.Pool) -> None:
    offset = 1000

    def shifted(x: int) -> int:
        return x + offset

    assert pool.submit(shifted, 5).result(DEADLINE) == 1005
    assert pool.submit(lambda: offset).result(DEADLINE) == 1000


def test_nested_function(pool: mp.Pool) -> None:
    def outer(x: int) -> int:
        def inner(y: int) -> int:
            return y * y

        return inner(x) + 1

    assert pool.submit(outer, 4).result(DEADLINE) == 17


def test_locally_decorated_function(pool: mp.Pool) -> None:
    factor = 5

    @mp.parallel(pool=pool)
    def scaled(x: int) -> int:
        return x * factor

    assert scaled(3).result(DEADLINE) == 15
    assert mp.parallel_map(scaled, [1, 2, 3]) == [5, 10, 15]


def test_module_level_function(pool: mp.Pool) -> None:
    assert pool.submit(module_level, 2).result(DEADLINE) == 102
    assert list(pool.map(module_level, [1, 2])) == [101, 102]


def test_decorated_module_level_function_pickles_by_reference(pool: mp.Pool) -> None:
    data = pickle.dumps(decorated)

    assert len(data) < 200
    assert b"Point" not in data  # no module contents travel along
    assert pickle.loads(data) is decorated


def test_decorated_module_level_function_runs_on_a_pool(pool: mp.Pool) -> None:
    assert decorated.options(pool=pool)(4).result(DEADLINE) == 12
    assert pool.submit(decorated, 5).result(DEADLINE) == 15
    assert list(pool.map(decorated, [1, 2, 3])) == [3, 6, 9]


# -- arguments and results -------------------------------------------------------------------


def test_instance_of_a_test_module_class_as_argument_and_result(pool: mp.Pool) -> None:
    assert pool.submit(norm_of, Point(3, -4)).result(DEADLINE) == 7

    result = pool.submit(make_point, 1, 2).result(DEADLINE)

    assert type(result) is Point
    assert result == Point(1, 2)
    assert pool.submit(identity, Point(5, 6)).result(DEADLINE) == Point(5, 6)


def test_keyword_arguments_cross_too(pool: mp.Pool) -> None:
    assert pool.submit(make_point, y=2, x=1).result(DEADLINE) == Point(1, 2)


def test_unpicklable_argument_fails_the_handle_with_serialization_error(pool: mp.Pool) -> None:
    handle = pool.submit(identity, threading.Lock())

    with pytest.raises(mp.SerializationError) as caught:
        handle.result(DEADLINE)

    error = caught.value
    assert isinstance(error, TypeError)
    assert isinstance(error, mp.TaskError)
    message = str(error)
    assert "lock" in message
    assert f"task {handle.task_id}" in message
    assert error.task_id == handle.task_id
    assert handle.state == "failed"
    assert pool.submit(module_level, 0).result(DEADLINE) == 100


def test_unpicklable_keyword_argument_is_named(pool: mp.Pool) -> None:
    handle = pool.submit(identity, value=threading.Lock())

    with pytest.raises(mp.SerializationError, match="value"):
        handle.result(DEADLINE)


def test_unpicklable_argument_is_caught_by_except_type_error(pool: mp.Pool) -> None:
    handle = pool.submit(identity, threading.Lock())

    with pytest.raises(TypeError, match="lock"):
        handle.result(DEADLINE)


@pytest.mark.parametrize(
    ("fn", "kind"), [(return_a_lock, "lock"), (return_a_generator, "generator")]
)
def test_unpicklable_result_fails_with_serialization_error_and_pool_survives(
    pool: mp.Pool, fn: object, kind: str
) -> None:
    pid_before = pool.submit(worker_pid).result(DEADLINE)
    handle = pool.submit(fn)  # type: ignore[arg-type]

    with pytest.raises(mp.SerializationError) as caught:
        handle.result(DEADLINE)

    assert isinstance(caught.value, TypeError)
    assert kind in str(caught.value)
    assert fn.__name__ in str(caught.value)  # type: ignore[attr-defined]
    assert pool.submit(module_level, 1).result(DEADLINE) == 101
    assert pool.submit(worker_pid).result(DEADLINE) == pid_before  # no worker was lost


def test_parallel_map_with_one_unpicklable_item(pool: mp.Pool) -> None:
    items: list[object] = [1, threading.Lock(), "three"]

    results = mp.parallel_map(mp.parallel(pool=pool)(fail_on_lock_items), items, on_error="return")

    assert results[0] == "int"
    assert isinstance(results[1], mp.SerializationError)
    assert results[2] == "str"


# -- exceptions ---------------------------------------------------------------------------------


def test_exception_that_cannot_be_unpickled_becomes_a_task_error(pool: mp.Pool) -> None:
    handle = pool.submit(raise_two_argument_error)

    with pytest.raises(mp.TaskError) as caught:
        handle.result(DEADLINE)

    message = str(caught.value)
    assert "TwoArgumentError" in message
    assert "code 7: disk on fire" in message
    assert caught.value.task_id == handle.task_id
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "raise_two_argument_error" in caught.value.__cause__.text
    assert pool.submit(module_level, 1).result(DEADLINE) == 101


def test_exception_chain_keeps_type_cause_and_context(pool: mp.Pool) -> None:
    pid = pool.submit(worker_pid).result(DEADLINE)
    handle = pool.submit(raise_chained_error)

    try:
        handle.result(DEADLINE)
    except ValueError as error:  # `except ValueError` catches the task's own exception
        caught = error
    else:
        pytest.fail("result() did not raise")

    assert type(caught) is ValueError
    assert str(caught) == "outer"
    cause = caught.__cause__
    assert isinstance(cause, RemoteTraceback)
    text = cause.text
    assert "KeyError" in text
    assert "inner" in text
    assert "raise_chained_error" in text  # the worker's traceback, with the function
    assert "direct cause" in text
    assert "RemoteTraceback" not in text
    notes = getattr(caught, "__notes__", [])
    assert any(
        f"task {handle.task_id}" in note and re.search(rf"\bpid {pid}\b", note) for note in notes
    ), notes


def test_exception_from_a_thread_task_is_the_original_object(thread_pool: mp.Pool) -> None:
    handle = thread_pool.submit(raise_chained_error)

    with pytest.raises(ValueError, match="outer") as caught:
        handle.result(DEADLINE)

    assert isinstance(caught.value.__cause__, KeyError)
    notes = getattr(caught.value, "__notes__", [])
    assert any(f"task {handle.task_id}" in note for note in notes), notes
