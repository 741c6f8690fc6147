"""Waiting in a coroutine, on asyncio or trio, for work that other threads finish.

    pool thread:  future ends --> done callback --> Signal.set_from_thread()
                                                       |  loop.call_soon_threadsafe (asyncio)
                                                       |  token.run_sync_soon       (trio)
                                                       v
    loop thread:  await Signal.wait()  -->  the coroutine looks at what it waits for,
                                            and sleeps again if that has not happened

A coroutine never blocks its event loop here: blocking work (a pool's
shutdown) runs on a thread of its own, and the coroutine waits for that
thread as for any other future. A done callback runs on a pool thread and
must never raise or warn there: an event loop that has closed before the
work ended gets no wake-up (whatever waited on it is gone with it).

Without trio in the process the running library can only be asyncio, and
nothing is imported to find that out; with it, sniffio (which trio
installs) tells. anyio needs nothing of its own: it runs on one of the two.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import _settings

if TYPE_CHECKING:
    from .pool import Pool

__all__ = ["Signal", "exit_pool", "in_thread", "result_of", "run_held", "signal", "wait_done"]

R = TypeVar("R")


class Signal(Protocol):
    """A wake-up that any thread may send to one coroutine of one event loop."""

    def set_from_thread(self) -> None: ...

    def call_soon(self, fn: Callable[[], object]) -> bool:
        """Run ``fn()`` on the loop's thread soon; False if the loop has closed."""
        ...

    async def wait(self, timeout: float | None = None, *, shielded: bool = False) -> bool:
        """Sleep until the next wake-up (True) or until ``timeout`` passes (False)."""
        ...


def running_library() -> str:
    """``"asyncio"`` or ``"trio"``: the library of the coroutine that asks."""
    if "trio" not in sys.modules:
        return "asyncio"
    try:
        import sniffio
    except ImportError:  # (trio depends on sniffio: only a broken install gets here)
        trio = sys.modules["trio"]
        return "trio" if trio.lowlevel.in_trio_run() else "asyncio"
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return "asyncio"  # which then says "no running event loop"


def signal() -> Signal:
    """A Signal for the running event loop; call it from a coroutine."""
    if running_library() == "trio":
        return _TrioSignal()
    return _AsyncioSignal()


class _AsyncioSignal:
    __slots__ = ("_event", "_loop")

    def __init__(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set_from_thread(self) -> None:
        self.call_soon(self._event.set)  # (a loop that has closed has nobody waiting)

    def call_soon(self, fn: Callable[[], object]) -> bool:
        try:
            self._loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop has closed
            return False
        return True

    async def wait(self, timeout: float | None = None, *, shielded: bool = False) -> bool:
        if shielded and "anyio" in sys.modules:
            # anyio cancels again at every await in a cancelled scope, as trio does.
            import anyio

            with anyio.CancelScope(shield=True):
                return await self._wait(timeout)
        # (plain asyncio cancels a task once; a second cancel ends even a shielded
        # wait, which is what asyncio code expects of a second cancel)
        return await self._wait(timeout)

    async def _wait(self, timeout: float | None) -> bool:
        import asyncio

        if timeout is None:
            await self._event.wait()
        else:
            try:
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event.clear()
        return True


class _TrioSignal:
    __slots__ = ("_event", "_token")

    def __init__(self) -> None:
        import trio

        self._token = trio.lowlevel.current_trio_token()
        self._event = trio.Event()

    def set_from_thread(self) -> None:
        self.call_soon(self._set)  # (a run that has ended has nobody waiting)

    def _set(self) -> None:
        self._event.set()

    def call_soon(self, fn: Callable[[], object]) -> bool:
        import trio

        try:
            self._token.run_sync_soon(fn)
        except trio.RunFinishedError:  # the run has ended
            return False
        return True

    async def wait(self, timeout: float | None = None, *, shielded: bool = False) -> bool:
        import trio

        # A trio Event cannot be cleared: a new one replaces it once it has fired.
        # A wake-up sent meanwhile sets the old one and is not lost: the caller
        # looks at what it waits for before it waits again.
        with trio.CancelScope(shield=shielded) as scope:
            if timeout is not None:
                scope.deadline = trio.current_time() + timeout
            await self._event.wait()
        if scope.cancelled_caught:
            return False
        self._event = trio.Event()
        return True


async def wait_done(
    future: concurrent.futures.Future[Any],
    timeout: float | None = None,
    *,
    shielded: bool = False,
) -> bool:
    """Sleep until ``future`` is done (True) or ``timeout`` passes (False).

    A cancellation of the waiting coroutine goes through (unless ``shielded``
    on trio or anyio); what it means for the future is the caller's choice.
    """
    if future.done():
        return True
    return await _sleep_until_done(future, signal(), timeout, shielded)


async def _sleep_until_done(
    future: concurrent.futures.Future[Any],
    wake: Signal,
    timeout: float | None = None,
    shielded: bool = False,
) -> bool:
    future.add_done_callback(lambda _: wake.set_from_thread())
    deadline = None if timeout is None else time.monotonic() + timeout
    while not future.done():
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not await wake.wait(left, shielded=shielded):
            return future.done()
    return True


def run_held() -> None:
    """Code is about to wait: a deterministic testing mode runs the tasks it holds now."""
    inline = _settings.inline_mode
    if inline is not None:
        inline.before_wait()


async def result_of(future: concurrent.futures.Future[R]) -> R:
    """What ``await handle`` does: the future's result, or its exception raised.

    Cancelling the awaiting coroutine cancels the future (a process task is
    stopped, a thread task is told to stop): nothing else waits for it, as
    far as this coroutine knows; ``asyncio.shield`` (or a shielded cancel
    scope on trio and anyio) keeps the task running.
    """
    if not future.done():
        run_held()
    if not future.done():
        wake = signal()  # (outside the try: awaiting with no event loop cancels nothing)
        try:
            await _sleep_until_done(future, wake)
        except BaseException:
            future.cancel()
            raise
    if future.cancelled() and running_library() == "asyncio":
        # As an awaited asyncio future (and asyncio.wrap_future) does. trio has no
        # such error for user code to raise: there result() raises TaskCancelledError.
        import asyncio

        raise asyncio.CancelledError(f"{future!r} was cancelled")
    return future.result()


class _Thread(threading.Thread):
    """A thread whose outcome, a future, can be awaited."""

    def __init__(self, fn: Callable[[], object], name: str) -> None:
        # A daemon: a program ending while a pool closes is handled by the pool's exit hook.
        super().__init__(name=name, daemon=True)
        self._fn = fn
        self.future: concurrent.futures.Future[object] = concurrent.futures.Future()
        self.future.set_running_or_notify_cancel()

    def run(self) -> None:
        try:
            value = self._fn()
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(value)

    async def outcome(self, *, shielded: bool = False) -> object:
        await wait_done(self.future, shielded=shielded)
        # Its work is done and it only returns now: joined at once, so that no thread of
        # ours outlives the wait (a pool made next forks its workers only when no other
        # thread runs).
        self.join()
        return self.future.result()


def in_thread(fn: Callable[[], object], name: str) -> _Thread:
    """Start ``fn()`` on a thread of its own; ``await thread.outcome()`` for its result."""
    thread = _Thread(fn, name)
    thread.start()
    return thread


# -- async with Pool ------------------------------------------------------------------


async def exit_pool(pool: Pool, exc_type: type[BaseException] | None) -> None:
    """What ``async with Pool(...)`` does at its end, on a thread of its own.

    As ``with``: the pool's tasks finish first. A block that ends by being
    cancelled (or by Ctrl-C), or whose exit is cancelled while it waits,
    stops the tasks instead - they end cancelled - and waits only for that.
    """
    if exc_type is None or not _is_cancellation(exc_type):
        closing = in_thread(pool.shutdown, f"{pool.name}-shutdown")
        try:
            await closing.outcome()
        except BaseException:
            await _stop(pool)
            raise
        return
    await _stop(pool)


async def _stop(pool: Pool) -> None:
    await in_thread(lambda: _stop_now(pool), f"{pool.name}-stop").outcome(shielded=True)


def _stop_now(pool: Pool) -> None:
    tasks = pool._tasks
    with tasks.lock:
        unfinished = [*tasks.running.values(), *tasks.pending, *tasks.retrying.values()]
    for task in unfinished:
        task.handle.cancel()
    # (returns at once when a shutdown already runs: that one ends as the tasks do)
    pool.shutdown(wait=True, cancel_pending=True, timeout=0)


def _is_cancellation(exc_type: type[BaseException]) -> bool:
    if issubclass(exc_type, KeyboardInterrupt):
        return True
    cancelled: list[type[BaseException]] = []
    if "asyncio" in sys.modules:
        asyncio_module: Any = sys.modules["asyncio"]
        cancelled.append(asyncio_module.CancelledError)
    if "trio" in sys.modules:
        trio_module: Any = sys.modules["trio"]
        cancelled.append(trio_module.Cancelled)
    return issubclass(exc_type, tuple(cancelled))
