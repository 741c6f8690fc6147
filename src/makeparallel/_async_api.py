"""``aimap`` and ``agather``: the batch helpers for async code, on asyncio, trio or anyio.

    items (iterable or async iterable) --pulled while fewer than `window` are out--> pool.submit
                                                                                         |
    async for <-- AsyncMap.__anext__ <-- Signal <-- done callback (a pool thread) <------+

Both wait without blocking the event loop (``_awaiting``), and neither may
leave work running that nobody waits for: a map that is closed, broken out
of, garbage-collected or whose consuming task is cancelled cancels the tasks
it has out; an ``agather`` whose task is cancelled cancels the unfinished
ones. Only ``asyncio.shield`` (or a shielded cancel scope) keeps them.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar, cast, overload

from . import _awaiting, _mapping
from ._checks import check_seconds, check_timeout
from ._options import check_function
from .api import ParallelFunction, _Call, default_pool, gather
from .handle import Handle
from .pool import Pool

__all__ = ["AsyncMap", "agather", "aimap"]

T = TypeVar("T")
R = TypeVar("R")

OnError = Literal["raise", "skip", "return"]

logger = logging.getLogger("makeparallel")


class AsyncMap(AsyncIterator[R]):
    """The results of ``aimap``: iterate with ``async for``.

    ``aclose()`` (or ``async with``, or ``contextlib.aclosing``) cancels the
    tasks still out; so does breaking out of the loop, once the map is
    garbage-collected, which CPython does at once when nothing else holds it.
    """

    def __init__(
        self,
        submit: Callable[[Any], Handle[Any]],
        items: Iterable[Any] | AsyncIterable[Any],
        window: int,
        ordered: bool,
        on_error: OnError,
    ) -> None:
        self._submit = submit
        self._window = window
        self._ordered = ordered
        self._on_error = on_error
        self._sync_items: Iterator[Any] | None = None
        self._async_items: AsyncIterator[Any] | None = None
        if isinstance(items, AsyncIterable):
            self._async_items = aiter(items)
        else:
            self._sync_items = iter(items)
        # Submitted and not yet handed out, in submission order (a dict: the unordered
        # map removes from the middle). Its size is what `window` bounds.
        self._out: dict[Handle[Any], None] = {}
        # Finished, in completion order (unordered only); done callbacks append here
        # from pool threads (deque.append is atomic).
        self._finished: deque[Handle[Any]] = deque()
        self._wake: _awaiting.Signal | None = None
        self._exhausted = False
        self._closed = False

    def __aiter__(self) -> AsyncMap[R]:
        return self

    async def __anext__(self) -> R:
        if self._closed:
            raise StopAsyncIteration
        if self._wake is None:
            self._wake = _awaiting.signal()
        try:
            while True:
                await self._fill()
                handle = self._next_done()
                if handle is None:
                    if not self._out:
                        self._closed = True
                        raise StopAsyncIteration
                    _awaiting.run_held()
                    await self._wake.wait()
                    continue
                try:
                    value: R = handle.result()
                except Exception as exc:
                    if self._on_error == "raise":
                        raise
                    if self._on_error == "skip":
                        continue
                    return exc  # type: ignore[return-value]  # (what on_error="return" asks for)
                return value
        except StopAsyncIteration:
            raise
        except BaseException:  # a failure raised, the input failed, or the task was cancelled
            self._cancel_out()
            raise

    async def _fill(self) -> None:
        """Submit items until ``window`` tasks are out or the input ends."""
        while not self._exhausted and len(self._out) < self._window:
            try:
                if self._async_items is not None:
                    item = await anext(self._async_items)
                else:
                    assert self._sync_items is not None
                    item = next(self._sync_items)
            except (StopIteration, StopAsyncIteration):
                self._exhausted = True
                return
            handle = self._submit(item)
            self._out[handle] = None
            handle.add_done_callback(self._on_done())

    def _on_done(self) -> Callable[[concurrent.futures.Future[Any]], None]:
        # The callback holds the signal and the queue, never the map: a map that
        # nobody holds any more is collected, and cancels what it has out.
        wake = self._wake
        assert wake is not None
        if self._ordered:
            return lambda _: wake.set_from_thread()
        finished = self._finished

        def done(handle: concurrent.futures.Future[Any]) -> None:
            finished.append(handle)  # type: ignore[arg-type]  # (only handles get this callback)
            wake.set_from_thread()

        return done

    def _next_done(self) -> Handle[Any] | None:
        if self._ordered:
            head = next(iter(self._out), None)
            if head is None or not head.done():
                return None
            del self._out[head]
            return head
        while self._finished:
            handle = self._finished.popleft()
            if handle in self._out:  # (not if it was cancelled out meanwhile)
                del self._out[handle]
                return handle
        return None

    def _cancel_out(self) -> None:
        self._closed = True
        out, self._out = list(self._out), {}
        self._finished.clear()
        _cancel(out)

    async def aclose(self) -> None:
        """Stop: cancel the tasks still out; the loop ends."""
        self._cancel_out()

    async def __aenter__(self) -> AsyncMap[R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cancel_out()

    def __del__(self) -> None:
        if not self._out:
            return
        out, self._out = list(self._out), {}
        # Not here and now: a garbage collection may run this on any thread, a pool's
        # thread holding the lock that cancel() takes too. The loop's thread is safe.
        if self._wake is None or not self._wake.call_soon(lambda: _cancel(out)):
            threading.Thread(target=_cancel, args=(out,), daemon=True).start()


def _cancel(handles: list[Handle[Any]]) -> None:
    for handle in handles:
        try:
            handle.cancel()
        except Exception:  # (on an event loop's thread: an exception there would end the run)
            logger.exception("cancelling task %s of a closed aimap failed", handle.task_id)


@overload
def aimap(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T],
    *,
    pool: Pool | None = None,
    window: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
    on_error: Literal["raise", "skip"] = "raise",
) -> AsyncMap[R]: ...


@overload
def aimap(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T],
    *,
    pool: Pool | None = None,
    window: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
    on_error: Literal["return"],
) -> AsyncMap[R | Exception]: ...


def aimap(
    fn: Callable[[T], R],
    items: Iterable[T] | AsyncIterable[T],
    *,
    pool: Pool | None = None,
    window: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
    on_error: OnError = "raise",
) -> AsyncMap[Any]:
    """``fn(item)`` for each item, run on a pool while the event loop runs on:
    ``async for result in mp.aimap(fn, items): ...``.

    ``items`` may be an iterable or an async iterable; it is read only as
    tasks finish: at most ``window`` tasks are out at once (submitted, and
    their results not yet handed to the loop), by default twice the pool's
    workers. Results come in input order, or as they finish with
    ``ordered=False``. ``pool`` is where the tasks run (by default the
    function's own ``@parallel`` pool, or the shared one); ``timeout`` is
    per item, as for ``imap``; ``on_error`` as for ``imap`` (``"raise"``
    also cancels the rest). Leaving the loop early, or cancelling the task
    that iterates, cancels the tasks still out.
    """
    if not callable(fn):
        raise TypeError(f"aimap needs a callable, got {type(fn).__name__}: {fn!r}")
    check_function(fn)
    _mapping.check_on_error(on_error)
    item_timeout = check_timeout(timeout)
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or window < 1
    ):
        raise ValueError(f"window must be a whole number of tasks >= 1, got {window!r}")
    if not isinstance(items, Iterable | AsyncIterable):
        raise TypeError(
            f"aimap needs an iterable or an async iterable of items, got {type(items).__name__}"
        )
    if pool is not None and not isinstance(pool, Pool):
        raise TypeError(f"pool must be a makeparallel.Pool, got {type(pool).__name__}")
    submit, target = _submitter(fn, pool, item_timeout)
    return AsyncMap(submit, items, window or 2 * target.workers, ordered, on_error)


def _submitter(
    fn: Callable[[Any], Any], pool: Pool | None, item_timeout: float | None
) -> tuple[Callable[[Any], Handle[Any]], Pool]:
    """How to submit one item, and the pool it goes to."""
    if isinstance(fn, ParallelFunction | _Call):
        # Through the function's own options: its name, retry, breaker and metadata apply.
        function = fn if isinstance(fn, ParallelFunction) else fn._function
        options = fn._options
        target = pool or options.pool or default_pool(options.backend)
        options = options.changed(pool=target)
        if item_timeout is not None:
            options = options.changed(timeout=item_timeout)
        return (lambda item: function._submit(options, (item,), {})), target
    target = pool or default_pool()
    return (lambda item: target._submit_call(fn, (item,), {}, timeout=item_timeout)), target


async def agather(
    handles: Iterable[concurrent.futures.Future[R]],
    on_error: OnError = "raise",
    timeout: float | None = None,
) -> list[Any]:
    """``gather`` for async code: the results of ``handles``, in their order.

    ``on_error`` and ``timeout`` are as for ``gather``: ``"raise"`` raises the
    first failure as soon as it happens (the other tasks keep running), and a
    ``TimeoutError`` leaves them running too. Cancelling the task that awaits
    cancels the tasks not yet finished. For coroutines, use ``asyncio.gather``
    or a task group: a handle can be awaited there too.
    """
    _mapping.check_on_error(on_error)
    items = list(handles)
    for h in items:
        if not isinstance(h, concurrent.futures.Future):
            raise TypeError(
                f"agather takes handles (futures), got {type(h).__name__}; for coroutines "
                "use asyncio.gather or a task group, in which handles can be awaited too"
            )
    seconds = None if timeout is None else check_seconds("timeout", timeout)
    unique = list(dict.fromkeys(items))
    if not all(h.done() for h in unique):
        finished: deque[concurrent.futures.Future[R]] = deque()
        wake = _awaiting.signal()

        def done(handle: concurrent.futures.Future[R]) -> None:
            finished.append(handle)
            wake.set_from_thread()

        for h in unique:
            h.add_done_callback(done)  # (at once for those done already)
        _awaiting.run_held()
        try:
            failed = await _until_done(len(unique), finished, wake, on_error, seconds)
        except TimeoutError:
            unfinished = sum(1 for h in unique if not h.done())
            raise TimeoutError(f"{unfinished} task(s) unfinished after {timeout} s") from None
        except BaseException:  # the awaiting task was cancelled
            for h in unique:
                h.cancel()
            raise
        if failed is not None:
            failed.result()  # raises the task's exception; the others run on
    # Every handle has ended: gather does not block, and says what it says for a sync caller.
    return gather(cast(list[Handle[R]], items), on_error=on_error)


async def _until_done(
    count: int,
    finished: deque[concurrent.futures.Future[R]],
    wake: _awaiting.Signal,
    on_error: OnError,
    seconds: float | None,
) -> concurrent.futures.Future[R] | None:
    """Wait until ``count`` futures have finished, or (``"raise"``) one has failed: that one."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while True:
        while finished:
            handle = finished.popleft()
            count -= 1
            if on_error == "raise" and (handle.cancelled() or handle.exception() is not None):
                return handle
        if count == 0:
            return None
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not await wake.wait(left) and not finished:
            raise TimeoutError
