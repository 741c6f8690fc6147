"""What a type checker infers for makeparallel's public API.

Checked by ``mypy --strict`` and ``pyright`` (``make test``), never run: pytest
collects only ``test_*.py``. Each ``assert_type`` must hold in both checkers. A
line with an ignore comment is a mistake that must stay an error: mypy
(``warn_unused_ignores``) and pyright (``reportUnnecessaryTypeIgnoreComment``)
both fail when an ignore is no longer needed.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator, Sequence
from typing import assert_type

import makeparallel as mp


@mp.parallel
def square(x: int) -> int:
    return x * x


@mp.parallel(timeout=30, name="shout", retry=mp.Retry(3))
def shout(text: str, *, times: int = 1) -> str:
    return text.upper() * times


class Resizer:
    @mp.parallel
    def resize(self, width: int) -> bytes:
        return b"." * width

    @classmethod
    @mp.parallel
    def make(cls, size: int) -> str:
        return str(size)

    @staticmethod
    @mp.parallel
    def plain(size: int) -> float:
        return size / 2


def failure(error: BaseException) -> None:
    print(error)


def decorated_functions() -> None:
    # A call returns a Handle of the function's return type, its parameters checked.
    assert_type(square(2), mp.Handle[int])
    assert_type(shout("hi", times=2), mp.Handle[str])
    square("2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    shout("hi", time=2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

    h = square(3)
    assert_type(h.result(), int)
    assert_type(h.get(timeout=1.0), int)
    assert_type(h.on_complete(print).on_error(failure), mp.Handle[int])
    assert_type(square.__wrapped__(3), int)
    done, _ = concurrent.futures.wait([h])
    assert_type(done, set[concurrent.futures.Future[int]])


def methods() -> None:
    # The instance (or the class, for a classmethod) is bound like a method's.
    assert_type(Resizer().resize(10), mp.Handle[bytes])
    assert_type(Resizer.make(3), mp.Handle[str])
    assert_type(Resizer().make(3), mp.Handle[str])
    Resizer().resize("10")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Resizer.make("3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def per_call_options() -> None:
    call = square.options(timeout=5, metadata={"user": "u1"}, name="sq")
    assert_type(call(4), mp.Handle[int])
    call("4")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    # A misspelled option, or an option of the wrong type, is an error.
    square.options(timout=5)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    square.options(retry=3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    mp.parallel(timout=5)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    mp.parallel(backend="proces")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]


def maps() -> None:
    numbers = [1, 2, 3]
    # A @parallel function given to a map runs as its plain function: results, not handles.
    assert_type(mp.parallel_map(square, numbers), list[int])
    assert_type(mp.parallel_map(square.__wrapped__, numbers), list[int])
    assert_type(mp.parallel_map(str, numbers, on_error="skip"), list[str])
    assert_type(mp.parallel_map(square, numbers, on_error="return"), list[int | BaseException])
    assert_type(mp.imap(square, numbers, ordered=False), Iterator[int])
    assert_type(mp.imap(len, ["a"], on_error="return"), Iterator[int | BaseException])
    assert_type(mp.parallel_map(square, numbers, workers=2, progress=True), list[int])
    mp.parallel_map(square, numbers, worker=2)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    mp.imap(square, numbers, progress=True)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    mp.parallel_map(square, ["a"])  # type: ignore[misc]  # pyright: ignore[reportCallIssue, reportArgumentType]
    mp.parallel_map(square, numbers, on_error="ignore")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]


def gathering() -> None:
    handles = [square(n) for n in range(3)]
    assert_type(mp.gather(handles), list[int])
    assert_type(mp.gather(handles, on_error="return"), list[int | BaseException])
    for h in mp.as_completed(handles, timeout=10):
        assert_type(h, mp.Handle[int])
    # Handles of different result types gather together: pyright infers list[int | str],
    # mypy (which joins int and str to object) list[object].
    mixed: Sequence[object] = mp.gather([square(1), shout("a")])
    print(mixed, mp.gather((square(1), shout("a")), on_error="return"))
    assert_type(mp.parallel_map(square.options(timeout=1), [1]), list[int])
    mp.gather([1, 2])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def pools() -> None:
    with mp.Pool(workers=2, start="spawn", memory_limit_action="kill") as pool:
        assert_type(pool.submit(square.__wrapped__, 2), mp.Handle[int])
        assert_type(pool.submit(square, 2), mp.Handle[int])
        assert_type(pool.submit(shout, "a", times=3), mp.Handle[str])
        assert_type(pool.map(square, [1, 2]), Iterator[int])
        assert_type(pool.map(pow, [1, 2], [3, 4]), Iterator[int])
        assert_type(pool.imap(square.__wrapped__, [1, 2]), Iterator[int])
        pool.submit(square, "2")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
        pool.submit(square.__wrapped__, "2")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    mp.Pool(start="forkserver")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    mp.Pool(backend="threads")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def configuring() -> None:
    mp.configure(workers=2, backend="thread", exit_timeout=None, start="spawn")
    mp.configure(exit_timeout="5")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
