"""The one-decorator API and the batch helpers built on the default pool.

``@parallel`` wraps a function in a ``ParallelFunction``: calling it submits
the call to a pool and returns a ``Handle`` at once. The plain function stays
reachable as ``__wrapped__`` and is what workers run; the wrapper itself
pickles *by reference* (module and name), so a decorated module-level
function never has to travel by value.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from . import _mapping, _options, _settings
from ._arguments import StartMethod, check_start, check_workers
from ._checks import check_seconds, check_timeout
from ._map_setup import ItemsDone, with_bar, with_own_pool
from ._options import BackendSpec, Options, check_backend, check_function, make_options
from ._worker import serialize
from .backends import resolve_kind
from .handle import Handle
from .pool import Pool, ShutdownSummary, live_pools

if TYPE_CHECKING:
    from typing import Concatenate, Unpack

    from ._typing import CallOptions, FutureOf, IterOptions, MapOptions, ParallelCallable
    from .policies import CircuitBreaker, Retry

__all__ = [
    "ParallelFunction",
    "as_completed",
    "configure",
    "gather",
    "imap",
    "parallel",
    "parallel_map",
    "shutdown",
]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
S = TypeVar("S")
T = TypeVar("T")
F = TypeVar("F", bound=concurrent.futures.Future[Any])


# -- the default pools ---------------------------------------------------------

_defaults_lock = threading.Lock()
_default_pools: dict[str, Pool] = {}
_default_workers: int | None = None
_default_backend: BackendSpec = "auto"
_default_start: StartMethod = "auto"


def default_pool(backend: BackendSpec | None = None) -> Pool:
    """The shared pool for ``backend`` (created on first use, sized to the usable CPUs)."""
    spec = _default_backend if backend is None else backend
    if _settings.inline_mode is not None:
        spec = "serial"  # a testing or debug mode: kept apart from the real default pools
    key = f"executor-{id(spec)}" if isinstance(spec, concurrent.futures.Executor) else spec
    with _defaults_lock:
        pool = _default_pools.get(key)
        if pool is None or not pool._open:
            forks = not isinstance(spec, concurrent.futures.Executor) and (
                resolve_kind(spec) == "process"
            )
            pool = Pool(
                workers=_default_workers,
                backend=spec,
                name=f"makeparallel-{key}",
                start=_default_start if forks else "auto",
            )
            _default_pools[key] = pool
        return pool


def configure(
    workers: int | None = None,
    backend: BackendSpec | None = None,
    *,
    exit_timeout: float | Literal[_options.Keep.KEEP] | None = _options.KEEP,
    start: StartMethod | None = None,
    debug: bool | None = None,
) -> None:
    """Set the size and engine of the default pool.

    A default pool that already exists is shut down (after its tasks finish)
    and the next call creates one with the new settings. ``exit_timeout`` is
    how long work still running when the program ends may go on before it is
    stopped (60 s by default; None waits as long as it takes). ``start`` is
    how the default process pool's workers start, as for ``Pool``.
    ``debug=True`` (or ``MAKEPARALLEL_DEBUG=1``) runs every task inline and logs
    it (docs/testing.md, "Debugging").
    """
    global _default_workers, _default_backend, _default_start
    check_workers(workers)
    if start is not None:
        check_start(start)
        _default_start = start
    if backend is not None:
        check_backend(backend)
    if debug is not None:
        from ._inline_modes import set_debug

        set_debug(bool(debug))
    if exit_timeout is not _options.KEEP:
        _settings.exit_timeout = (
            None if exit_timeout is None else check_seconds("exit_timeout", exit_timeout)
        )
    with _defaults_lock:
        _default_workers = workers
        if backend is not None:
            _default_backend = backend
        old = list(_default_pools.values())
        _default_pools.clear()
    for pool in old:
        pool.shutdown(wait=True)


def shutdown(
    wait: bool = True, *, cancel_pending: bool = False, timeout: float | None = None
) -> ShutdownSummary:
    """Shut down every pool of this process, the default ones included; returns the
    summary of all of them together."""
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout}")
    with _defaults_lock:
        _default_pools.clear()
    summary = ShutdownSummary()
    for pool in live_pools():
        summary += pool.shutdown(wait=wait, cancel_pending=cancel_pending, timeout=timeout)
    return summary


def _forget_pools_in_child() -> None:
    # A forked child has copies of the parent's pools but none of their threads or workers.
    global _defaults_lock
    _defaults_lock = threading.Lock()
    _default_pools.clear()


os.register_at_fork(after_in_child=_forget_pools_in_child)


# -- @parallel ------------------------------------------------------------------


class ParallelFunction(Generic[P, R]):
    """A function whose calls run on a pool and return a ``Handle`` at once."""

    _makeparallel_wrapper = True  # what workers look for to unwrap

    def __init__(self, fn: Callable[P, R], options: Options) -> None:
        check_function(fn)
        functools.update_wrapper(self, fn)
        self.__wrapped__: Callable[P, R] = fn
        self.__qualname__: str = getattr(fn, "__qualname__", type(fn).__qualname__)
        self._options = options
        self._reference: bytes | None = None
        self._reference_known = False

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        return self._submit(self._options, args, kwargs)

    def options(self, **overrides: Unpack[CallOptions]) -> _Call[P, R]:
        """The same function with per-call options (``timeout``, ``retry``, ``name``,
        ``metadata``, ``backend``, ``pool``, ``circuit_breaker``).

        Options never mix with the function's own keyword arguments:
        ``fn.options(name="x")(name="y")`` passes ``name="y"`` to ``fn``.
        """
        return _Call(self, make_options(self._options, dict(overrides)))

    def _submit(self, options: Options, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Handle[R]:
        pool = options.pool or default_pool(options.backend)
        return pool._submit_call(
            self.__wrapped__,
            args,
            kwargs,
            name=options.name or self.__qualname__,
            metadata=dict(options.metadata),
            fn_data=self._reference_bytes(),
            timeout=options.timeout,
            retry=options.retry,
            circuit_breaker=options.circuit_breaker,
        )

    def _reference_bytes(self) -> bytes | None:
        """This wrapper pickled by reference, or None when it cannot be imported by name."""
        if not self._reference_known:
            self._reference = serialize.dumps(self) if self._importable() else None
            self._reference_known = True
        return self._reference

    def _importable(self) -> bool:
        module_name = getattr(self, "__module__", None)
        if not module_name or module_name == "__main__" or "<locals>" in self.__qualname__:
            return False
        try:
            if module_name not in sys.modules:
                __import__(module_name)
            target: Any = sys.modules[module_name]
            for part in self.__qualname__.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError, KeyError):
            return False
        return target is self

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self._importable():
            return str(self.__qualname__)
        return (_rebuild, (self.__wrapped__, self._options))

    # A method: the instance is bound as the first argument, so a type checker sees
    # ``C().m`` take the remaining parameters and return a Handle. Type checkers do not
    # follow ``classmethod`` into a wrapper like this one, so the first two overloads
    # bind the class of a ``@classmethod @parallel`` method (its first parameter is
    # ``type[C]``), reached through the class or through an instance. (mypy does not
    # check ``self`` here, so it also binds a plain method reached through its class:
    # docs/guide.md, "Types", names the gap.)
    @overload
    def __get__(
        self: ParallelFunction[Concatenate[type[S], Q], R], instance: None, owner: type[S]
    ) -> Callable[Q, Handle[R]]: ...

    @overload
    def __get__(
        self: ParallelFunction[Concatenate[type[S], Q], R], instance: S, owner: type | None = None
    ) -> Callable[Q, Handle[R]]: ...

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> ParallelFunction[P, R]: ...

    @overload
    def __get__(
        self: ParallelFunction[Concatenate[S, Q], R], instance: S, owner: type | None = None
    ) -> Callable[Q, Handle[R]]: ...

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        call: Callable[..., Handle[R]] = self.__call__
        return functools.partial(call, instance)

    def __repr__(self) -> str:
        return f"<parallel function {self.__module__}.{self.__qualname__}>"


def _rebuild(fn: Callable[..., Any], options: Options) -> ParallelFunction[..., Any]:
    return ParallelFunction(fn, options.changed(pool=None))


class _Call(Generic[P, R]):
    """A ParallelFunction with per-call options; calling it submits."""

    _makeparallel_wrapper = True

    def __init__(self, function: ParallelFunction[P, R], options: Options) -> None:
        self._function = function
        self._options = options
        self.__wrapped__ = function.__wrapped__

    def _reference_bytes(self) -> bytes | None:
        return self._function._reference_bytes()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        return self._function._submit(self._options, args, kwargs)


@overload
def parallel(fn: Callable[P, R], /) -> ParallelFunction[P, R]: ...


@overload
def parallel(
    *,
    timeout: float | None = None,
    retry: Retry | None = None,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    backend: BackendSpec | None = None,
    pool: Pool | None = None,
    circuit_breaker: CircuitBreaker | None = None,
) -> Callable[[Callable[P, R]], ParallelFunction[P, R]]: ...


def parallel(
    fn: Callable[P, R] | None = None,
    /,
    *,
    timeout: float | None = None,
    retry: Retry | None = None,
    name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    backend: BackendSpec | None = None,
    pool: Pool | None = None,
    circuit_breaker: CircuitBreaker | None = None,
) -> ParallelFunction[P, R] | Callable[[Callable[P, R]], ParallelFunction[P, R]]:
    """Make calls of ``fn`` run in parallel: each call returns a ``Handle`` at once.

    Use bare (``@parallel``) or with options
    (``@parallel(timeout=30, retry=mp.Retry(3), name="resize", backend="thread")``).
    ``timeout`` counts from the moment the task starts (time in the queue is
    free) by the monotonic clock; a process task past it is killed and its
    worker replaced.
    """
    given = {
        "timeout": timeout,
        "retry": retry,
        "name": name,
        "metadata": metadata,
        "backend": backend,
        "pool": pool,
        "circuit_breaker": circuit_breaker,
    }
    options = make_options(Options(), {k: v for k, v in given.items() if v is not None})
    if fn is not None:
        return ParallelFunction(fn, options)

    def decorate(function: Callable[P, R]) -> ParallelFunction[P, R]:
        return ParallelFunction(function, options)

    return decorate


# -- batches ----------------------------------------------------------------------


def _pool_options(
    fn: Callable[..., Any],
) -> tuple[Pool | None, BackendSpec | None, float | None]:
    if isinstance(fn, ParallelFunction | _Call):
        return fn._options.pool, fn._options.backend, fn._options.timeout
    return None, None, None


# A @parallel function given to a map runs as its plain function (its values are
# the results, not handles): the ParallelCallable overloads come first. With
# on_error="return" a failed item's exception stands in its place.
@overload
def parallel_map(
    fn: ParallelCallable[[T], R],
    iterable: Iterable[T],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    **options: Unpack[MapOptions],
) -> list[R]: ...


@overload
def parallel_map(
    fn: ParallelCallable[[T], R],
    iterable: Iterable[T],
    *,
    on_error: Literal["raise", "skip", "return"],
    **options: Unpack[MapOptions],
) -> list[R | BaseException]: ...


@overload
def parallel_map(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    **options: Unpack[MapOptions],
) -> list[R]: ...


@overload
def parallel_map(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    *,
    on_error: Literal["raise", "skip", "return"],
    **options: Unpack[MapOptions],
) -> list[R | BaseException]: ...


def parallel_map(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    *,
    workers: int | None = None,
    chunksize: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
    progress: bool = False,
    on_error: Literal["raise", "skip", "return"] = "raise",
) -> list[Any]:
    """``[fn(x) for x in iterable]``, in parallel. Returns a list.

    ``workers`` runs the map on a pool of its own of that size (created and
    shut down by this call); by default the shared pool is used.
    ``on_error="skip"`` leaves failed items out, ``"return"`` puts their
    exceptions in their place; ``progress=True`` shows a progress bar.
    ``timeout`` is per item: an item running longer fails with
    ``TaskTimeoutError`` (its worker process is replaced), the others go on.
    """
    _mapping.check_on_error(on_error)
    results: list[Any] = []
    for batch in _imap_batches(
        fn,
        iterable,
        workers=workers,
        chunksize=chunksize,
        ordered=ordered,
        timeout=timeout,
        on_error=on_error,
        progress=progress,
    ):
        results.extend(batch)
    return results


@overload
def imap(
    fn: ParallelCallable[[T], R],
    iterable: Iterable[T],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    **options: Unpack[IterOptions],
) -> Iterator[R]: ...


@overload
def imap(
    fn: ParallelCallable[[T], R],
    iterable: Iterable[T],
    *,
    on_error: Literal["raise", "skip", "return"],
    **options: Unpack[IterOptions],
) -> Iterator[R | BaseException]: ...


@overload
def imap(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    **options: Unpack[IterOptions],
) -> Iterator[R]: ...


@overload
def imap(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    *,
    on_error: Literal["raise", "skip", "return"],
    **options: Unpack[IterOptions],
) -> Iterator[R | BaseException]: ...


def imap(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    *,
    workers: int | None = None,
    chunksize: int | None = None,
    ordered: bool = True,
    timeout: float | None = None,
    on_error: Literal["raise", "skip", "return"] = "raise",
    _progress: bool = False,
) -> Iterator[Any]:
    """Lazily apply ``fn`` to each item; input is pulled only as workers free up.

    Results come in input order, or as they complete with ``ordered=False``.
    Memory stays bounded even over an endless generator.
    """
    return _mapping.flatten(
        _imap_batches(
            fn,
            iterable,
            workers=workers,
            chunksize=chunksize,
            ordered=ordered,
            timeout=timeout,
            on_error=on_error,
            progress=_progress,
        )
    )


def _imap_batches(
    fn: Callable[[T], R],
    iterable: Iterable[T],
    *,
    workers: int | None,
    chunksize: int | None,
    ordered: bool,
    timeout: float | None,
    on_error: Literal["raise", "skip", "return"],
    progress: bool,
) -> Iterator[list[Any]]:
    """``imap``'s results, one list per chunk."""
    check_workers(workers)
    item_timeout = check_timeout(timeout)
    own_pool, own_backend, own_timeout = _pool_options(fn)
    if item_timeout is None:
        item_timeout = own_timeout

    def start(pool: Pool, bar: ItemsDone) -> Iterator[list[Any]]:
        return _mapping.imap_batches(
            pool._maps,
            fn,
            iterable,
            chunksize=chunksize,
            ordered=ordered,
            on_error=on_error,
            item_timeout=item_timeout,
            on_items_done=bar,
        )

    bar_over = iterable if progress else None
    if workers is None:
        pool = own_pool or default_pool(own_backend)
        return with_bar(lambda bar: start(pool, bar), bar_over)
    # A pool of its own, created at the first next() so an iterator that is
    # never used starts no worker.
    _mapping.check_map_arguments(fn, chunksize, on_error)
    backend = own_backend if own_backend is not None else _default_backend
    return with_own_pool(lambda: Pool(workers=workers, backend=backend), start, bar_over)


@overload
def gather(
    handles: Iterable[FutureOf[R]],
    on_error: Literal["raise", "skip"] = "raise",
    timeout: float | None = None,
) -> list[R]: ...


@overload
def gather(
    handles: Iterable[FutureOf[R]],
    on_error: Literal["raise", "skip", "return"],
    timeout: float | None = None,
) -> list[R | BaseException]: ...


def gather(
    handles: Iterable[Any],
    on_error: Literal["raise", "skip", "return"] = "raise",
    timeout: float | None = None,
) -> list[Any]:
    """The results of ``handles``, in their order.

    ``on_error="raise"`` raises the first failure as soon as it happens
    (other tasks keep running); ``"skip"`` leaves failures out; ``"return"``
    puts the exception in the failed task's place.
    """
    _mapping.check_on_error(on_error)
    _mapping.before_wait()
    items = list(handles)
    for h in items:
        if not isinstance(h, concurrent.futures.Future):
            raise TypeError(f"gather takes handles (futures), got {type(h).__name__}")
    if on_error == "raise":
        for done in concurrent.futures.as_completed(items, timeout=timeout):
            if done.cancelled() or done.exception() is not None:
                done.result()  # raises the task's exception
        return [h.result() for h in items]
    finished, _ = concurrent.futures.wait(items, timeout=timeout)
    if len(finished) < len(set(items)):
        raise TimeoutError(
            f"{len(set(items)) - len(finished)} task(s) unfinished after {timeout} s"
        )
    results: list[Any] = []
    for h in items:
        try:
            results.append(h.result())
        except BaseException as exc:
            if not isinstance(exc, Exception | concurrent.futures.CancelledError):
                raise
            if on_error == "return":
                results.append(exc)
    return results


def as_completed(handles: Iterable[F], timeout: float | None = None) -> Iterator[F]:
    """Yield each handle as its task ends (``TimeoutError`` if ``timeout`` passes first)."""
    _mapping.before_wait()
    return cast(Iterator[F], concurrent.futures.as_completed(list(handles), timeout))
