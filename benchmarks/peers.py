"""makeparallel and its peers behind one small interface: start a pool, submit one call.

For benchmarks that send tasks one at a time (overhead, round trip, cold
start, large arguments). Each ``Peer`` starts a pool of N workers and gives
back a ``Started``: ``submit(fn, *args)`` returns something with
``result()``, ``call(fn, *args)`` is the peer's own blocking call (for
example ``multiprocessing.Pool.apply``), ``close()`` shuts the pool down and
waits for its workers. Map-style APIs differ too much between libraries to
share an interface; the benchmarks that use them call each library directly.

A peer's library is imported when the peer starts, so a missing package
raises ImportError there and the row is marked "skipped".
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from measure import warm_up


class _Waiter:
    """``result()`` for a multiprocessing ``AsyncResult``."""

    def __init__(self, pending: Any) -> None:
        self._pending = pending

    def result(self) -> Any:
        return self._pending.get()


@dataclass(frozen=True)
class Started:
    submit: Callable[..., Any]
    call: Callable[..., Any]
    close: Callable[[], None]


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    start: Callable[[int], Started]
    note: str = ""


def _executor(executor: cf.Executor) -> Started:
    def call(fn: Callable[..., Any], *args: Any) -> Any:
        return executor.submit(fn, *args).result()

    return Started(executor.submit, call, lambda: executor.shutdown(wait=True))


def process_pool_executor(method: str | None = None) -> Callable[[int], Started]:
    def start(workers: int) -> Started:
        context = None if method is None else multiprocessing.get_context(method)
        return _executor(cf.ProcessPoolExecutor(workers, mp_context=context))

    return start


def thread_pool_executor(workers: int) -> Started:
    return _executor(cf.ThreadPoolExecutor(workers))


def multiprocessing_pool(workers: int) -> Started:
    pool = multiprocessing.Pool(workers)

    def close() -> None:
        pool.close()
        pool.join()

    def submit(fn: Callable[..., Any], *args: Any) -> _Waiter:
        return _Waiter(pool.apply_async(fn, args))

    return Started(submit, lambda fn, *args: pool.apply(fn, args), close)


def pebble_pool(workers: int) -> Started:
    from pebble import ProcessPool

    pool = ProcessPool(max_workers=workers)

    def submit(fn: Callable[..., Any], *args: Any) -> Any:
        return pool.schedule(fn, args=args)

    def close() -> None:
        pool.close()  # type: ignore[no-untyped-call]
        pool.join()

    return Started(submit, lambda fn, *args: submit(fn, *args).result(), close)


def loky_reusable(workers: int) -> Started:
    from loky import get_reusable_executor  # type: ignore[import-untyped]

    return _executor(get_reusable_executor(max_workers=workers))


def loky_new(workers: int) -> Started:
    from loky import ProcessPoolExecutor

    return _executor(ProcessPoolExecutor(max_workers=workers))


def makeparallel_pool(
    backend: str = "process", start: str = "spawn", forward_logs: bool = True
) -> Callable[[int], Started]:
    def started(workers: int) -> Started:
        import makeparallel as mp

        pool = mp.Pool(workers=workers, backend=backend, start=start, forward_logs=forward_logs)
        return _executor(pool)

    return started


PROCESS_POOL_EXECUTOR = Peer("ppe", "ProcessPoolExecutor", process_pool_executor())
MULTIPROCESSING_POOL = Peer("mp_pool", "multiprocessing.Pool", multiprocessing_pool)
PEBBLE = Peer("pebble", "pebble.ProcessPool", pebble_pool)
LOKY = Peer("loky", "loky.get_reusable_executor", loky_reusable)
MAKEPARALLEL = Peer("makeparallel", "makeparallel Pool", makeparallel_pool())
# The same without forwarding workers' logs and output (metrics and events are always on)
MAKEPARALLEL_QUIET = Peer(
    "makeparallel_quiet",
    "makeparallel Pool(forward_logs=False)",
    makeparallel_pool(forward_logs=False),
)

# The process pools that take single submits, in the order each round runs them:
# pools whose workers are a bare fork() of this process come before the ones
# that leave threads of their own in it.
SUBMITTING = (
    PROCESS_POOL_EXECUTOR,
    MULTIPROCESSING_POOL,
    PEBBLE,
    LOKY,
    MAKEPARALLEL,
    MAKEPARALLEL_QUIET,
)


@contextlib.contextmanager
def warm_pool(peer: Peer, workers: int) -> Iterator[Started]:
    """A started pool of ``peer`` with every worker warmed up; closed afterwards."""
    started = peer.start(workers)
    try:
        warm_up(started.submit, workers)
        yield started
    finally:
        started.close()
