"""Wrong arguments fail at once, with the right exception type and a message that helps."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import makeparallel as mp

DEADLINE = 10.0


def square(x: int) -> int:
    return x * x


# a function whose maps run inline, so no test here starts worker processes
serial_square = mp.parallel(backend="serial")(square)


# -- workers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)],
)
def test_pool_rejects_bad_worker_counts(workers: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="workers"):
        mp.Pool(workers=workers, backend="thread")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("workers", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_configure_rejects_bad_worker_counts(
    workers: object, error: type[Exception], reset_default_pool: None
) -> None:
    with pytest.raises(error, match="workers"):
        mp.configure(workers=workers, backend="serial")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("workers", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_parallel_map_rejects_bad_worker_counts(workers: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="workers"):
        mp.parallel_map(serial_square, [1, 2], workers=workers)  # type: ignore[arg-type]
    with pytest.raises(error, match="workers"):
        mp.imap(serial_square, [1, 2], workers=workers)  # type: ignore[arg-type]


# -- backend -------------------------------------------------------------------------------


def test_unknown_backend_lists_the_choices(reset_default_pool: None) -> None:
    with pytest.raises(ValueError, match="gpu") as caught:
        mp.Pool(workers=1, backend="gpu")
    message = str(caught.value)
    for choice in ("auto", "process", "thread", "serial", "interpreter"):
        assert repr(choice) in message

    with pytest.raises(ValueError, match="'process'"):
        mp.parallel(backend="gpu")(square)
    with pytest.raises(ValueError, match="'process'"):
        serial_square.options(backend="gpu")
    with pytest.raises(ValueError, match="'process'"):
        mp.configure(backend="gpu")


def test_backend_of_the_wrong_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="backend"):
        mp.Pool(workers=1, backend=42)  # type: ignore[arg-type]


# -- @parallel -------------------------------------------------------------------------------


def test_parallel_on_a_non_callable_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="int"):
        mp.parallel(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        mp.parallel(name="x")(42)  # type: ignore[arg-type]


def test_parallel_on_a_generator_function_is_a_type_error() -> None:
    def numbers() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        mp.parallel(numbers)
    with pytest.raises(TypeError, match="generator"):
        mp.parallel(backend="thread")(numbers)


def test_parallel_on_an_async_function_is_a_type_error() -> None:
    async def fetch() -> int:
        return 1

    async def stream() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="async"):
        mp.parallel(fetch)
    with pytest.raises(TypeError):
        mp.parallel(stream)


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="bogus"):
        mp.parallel(bogus=1)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="bogus"):
        serial_square.options(bogus=1)


def test_options_of_the_wrong_type_are_type_errors() -> None:
    with pytest.raises(TypeError, match="name"):
        serial_square.options(name=3)
    with pytest.raises(TypeError, match="metadata"):
        serial_square.options(metadata=[("a", 1)])
    with pytest.raises(TypeError, match="pool"):
        serial_square.options(pool="not a pool")


# -- batches ---------------------------------------------------------------------------------


def test_parallel_map_rejects_an_unknown_on_error() -> None:
    with pytest.raises(ValueError, match="on_error"):
        mp.parallel_map(serial_square, [1, 2], on_error="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_error"):
        mp.imap(serial_square, [1, 2], on_error="bogus")  # type: ignore[arg-type]


@pytest.mark.parametrize("chunksize", [0, -3])
def test_chunksize_must_be_positive(chunksize: int) -> None:
    with pytest.raises(ValueError, match="chunksize"):
        mp.parallel_map(serial_square, [1, 2], chunksize=chunksize)
    with pytest.raises(ValueError, match="chunksize"):
        mp.imap(serial_square, [1, 2], chunksize=chunksize)


def test_pool_map_checks_its_arguments(serial_pool: mp.Pool) -> None:
    with pytest.raises(ValueError, match="chunksize"):
        serial_pool.map(square, [1, 2], chunksize=0)
    with pytest.raises(TypeError):
        serial_pool.map(square)
    with pytest.raises(TypeError):
        serial_pool.map(42, [1, 2])  # type: ignore[arg-type]


def test_gather_rejects_an_unknown_on_error(serial_pool: mp.Pool) -> None:
    handles = [serial_pool.submit(square, 2)]

    with pytest.raises(ValueError, match="on_error"):
        mp.gather(handles, on_error="x")  # type: ignore[arg-type]


def test_gather_rejects_things_that_are_not_handles() -> None:
    with pytest.raises(TypeError):
        mp.gather([1, 2])  # type: ignore[list-item]


# -- handles and pools ---------------------------------------------------------------------


def test_on_error_callback_must_be_callable(serial_pool: mp.Pool) -> None:
    handle = serial_pool.submit(square, 3)

    with pytest.raises(TypeError):
        handle.on_error("not callable")  # type: ignore[arg-type]


def test_on_complete_callback_must_be_callable(serial_pool: mp.Pool) -> None:
    handle = serial_pool.submit(square, 3)

    with pytest.raises(TypeError):
        handle.on_complete("not callable")  # type: ignore[arg-type]


def test_submit_of_a_non_callable_is_a_type_error(serial_pool: mp.Pool) -> None:
    with pytest.raises(TypeError):
        serial_pool.submit(42)  # type: ignore[arg-type]


def test_shutdown_rejects_a_negative_timeout() -> None:
    pool = mp.Pool(workers=1, backend="thread")
    try:
        with pytest.raises(ValueError, match="timeout"):
            pool.shutdown(timeout=-1)
        # the refused call changed nothing: the pool still accepts work
        assert pool.submit(square, 4).result(DEADLINE) == 16
    finally:
        pool.shutdown()


def test_pool_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="name"):
        mp.Pool(workers=1, backend="thread", name=7)  # type: ignore[arg-type]
