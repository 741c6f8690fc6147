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

from . import _mapping, _settings
from ._arguments import check_start, check_workers
from ._checks import check_seconds, check_timeout
from ._worker import serialize
from .backends import ENGINE_NAMES, resolve_kind
from .handle import Handle
from .pool import Pool, ShutdownSummary, live_pools

if TYPE_CHECKING:
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
R = TypeVar("R")
T = TypeVar("T")

BackendSpec = str | concurrent.futures.Executor


# -- the default pools ---------------------------------------------------------

_defaults_lock = threading.Lock()
_default_pools: dict[str, Pool] = {}
_default_workers: int | None = None
_default_backend: BackendSpec = "auto"
_default_start = "auto"


def _check_backend(backend: object) -> None:
    if isinstance(backend, concurrent.futures.Executor):
        return
    if not isinstance(backend, str) or backend not in ENGINE_NAMES:
        raise ValueError(
            f"unknown backend {backend!r}: use one of {', '.join(map(repr, ENGINE_NAMES))} "
            "or pass a concurrent.futures.Executor instance"
        )


def default_pool(backend: BackendSpec | None = None) -> Pool:
    """The shared pool for ``backend`` (created on first use, sized to the usable CPUs)."""
    spec = _default_backend if backend is None else backend
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


_KEEP = object()


def configure(
    workers: int | None = None,
    backend: BackendSpec | None = None,
    *,
    exit_timeout: float | object | None = _KEEP,
    start: str | None = None,
) -> None:
    """Set the size and engine of the default pool.

    A default pool that already exists is shut down (after its tasks finish)
    and the next call creates one with the new settings. ``exit_timeout`` is
    how long work still running when the program ends may go on before it is
    stopped (60 s by default; None waits as long as it takes). ``start`` is
    how the default process pool's workers start, as for ``Pool``.
    """
    global _default_workers, _default_backend, _default_start
    check_workers(workers)
    if start is not None:
        _default_start = check_start(start)
    if backend is not None:
        _check_backend(backend)
    if exit_timeout is not _KEEP:
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


_OPTION_NAMES = ("name", "metadata", "backend", "pool", "timeout", "retry", "circuit_breaker")


class _Options:
    """A ``@parallel`` function's options; never changed once made (``changed`` copies)."""

    __slots__ = _OPTION_NAMES

    def __init__(
        self,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        backend: BackendSpec | None = None,
        pool: Pool | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        circuit_breaker: CircuitBreaker | None = None,
    ) -> None:
        self.name = name
        self.metadata: Mapping[str, Any] = {} if metadata is None else metadata
        self.backend = backend
        self.pool = pool
        self.timeout = timeout
        self.retry = retry
        self.circuit_breaker = circuit_breaker

    def changed(self, **changes: Any) -> _Options:
        values = {name: getattr(self, name) for name in _OPTION_NAMES}
        return _Options(**{**values, **changes})


def _make_options(base: _Options, overrides: dict[str, Any]) -> _Options:
    unknown = sorted(set(overrides) - set(_OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(_OPTION_NAMES)}"
        )
    if "name" in overrides and not isinstance(overrides["name"], str | None):
        raise TypeError(f"name must be a string, got {type(overrides['name']).__name__}")
    if "metadata" in overrides:
        metadata = overrides["metadata"]
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
        overrides["metadata"] = {**base.metadata, **metadata}
    if overrides.get("backend") is not None:
        _check_backend(overrides["backend"])
    if overrides.get("pool") is not None and not isinstance(overrides["pool"], Pool):
        raise TypeError(f"pool must be a makeparallel.Pool, got {type(overrides['pool']).__name__}")
    if "timeout" in overrides:
        overrides["timeout"] = check_timeout(overrides["timeout"])
    if overrides.get("retry") is not None or overrides.get("circuit_breaker") is not None:
        _check_policies(overrides)
    return base.changed(**overrides)


def _check_policies(overrides: dict[str, Any]) -> None:
    from .policies import CircuitBreaker, Retry  # (loaded only by programs that use them)

    if overrides.get("retry") is not None and not isinstance(overrides["retry"], Retry):
        raise TypeError(
            f"retry must be a makeparallel.Retry, got {type(overrides['retry']).__name__}; "
            "e.g. retry=mp.Retry(attempts=3)"
        )
    breaker = overrides.get("circuit_breaker")
    if breaker is not None and not isinstance(breaker, CircuitBreaker):
        raise TypeError(
            f"circuit_breaker must be a makeparallel.CircuitBreaker, got {type(breaker).__name__}"
        )


def _check_function(fn: object) -> None:
    if not callable(fn):
        raise TypeError(f"@parallel needs a function, got {type(fn).__name__}: {fn!r}")
    flags = _code_flags(fn)
    if flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR):
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)!r} is a generator function: its values cannot "
            "stream back from a worker. Return a list instead, or use mp.imap over the inputs."
        )
    inspect = sys.modules.get("inspect")  # (marked ones: inspect.markcoroutinefunction)
    if flags & _CO_COROUTINE or (inspect is not None and inspect.iscoroutinefunction(fn)):
        raise TypeError(
            f"{getattr(fn, '__qualname__', fn)!r} is an 'async def' function: run it with "
            "asyncio; makeparallel runs regular functions (and its handles can be awaited)."
        )


# Code flags, as inspect names them (CO_*): read here, where importing inspect would
# add a tenth to the time ``import makeparallel`` takes.
_CO_GENERATOR, _CO_COROUTINE, _CO_ASYNC_GENERATOR = 0x20, 0x80, 0x200


def _code_flags(fn: object) -> int:
    """The flags of the code ``fn`` runs (through partials and bound methods); 0 if none."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    flags = getattr(code, "co_flags", 0)
    return flags if isinstance(flags, int) else 0


class ParallelFunction(Generic[P, R]):
    """A function whose calls run on a pool and return a ``Handle`` at once."""

    _makeparallel_wrapper = True  # what workers look for to unwrap

    def __init__(self, fn: Callable[P, R], options: _Options) -> None:
        _check_function(fn)
        functools.update_wrapper(self, fn)
        self.__wrapped__: Callable[P, R] = fn
        self.__qualname__: str = getattr(fn, "__qualname__", type(fn).__qualname__)
        self._options = options
        self._reference: bytes | None = None
        self._reference_known = False

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        return self._submit(self._options, args, kwargs)

    def options(self, **overrides: Any) -> _Call[P, R]:
        """The same function with per-call options (``timeout``, ``retry``, ``name``,
        ``metadata``, ``backend``, ``pool``, ``circuit_breaker``).

        Options never mix with the function's own keyword arguments:
        ``fn.options(name="x")(name="y")`` passes ``name="y"`` to ``fn``.
        """
        return _Call(self, _make_options(self._options, overrides))

    def _submit(
        self, options: _Options, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Handle[R]:
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

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        call: Callable[..., Handle[R]] = self.__call__
        return functools.partial(call, instance)

    def __repr__(self) -> str:
        return f"<parallel function {self.__module__}.{self.__qualname__}>"


def _rebuild(fn: Callable[..., Any], options: _Options) -> ParallelFunction[..., Any]:
    return ParallelFunction(fn, options.changed(pool=None))


class _Call(Generic[P, R]):
    """A ParallelFunction with per-call options; calling it submits."""

    _makeparallel_wrapper = True

    def __init__(self, function: ParallelFunction[P, R], options: _Options) -> None:
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
    options = _make_options(_Options(), {k: v for k, v in given.items() if v is not None})
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
        return _with_bar(lambda bar: start(pool, bar), bar_over)
    # A pool of its own, created at the first next() so an iterator that is
    # never used starts no worker.
    _mapping.check_map_arguments(fn, chunksize, on_error)
    backend = own_backend if own_backend is not None else _default_backend
    return _with_own_pool(lambda: Pool(workers=workers, backend=backend), start, bar_over)


ItemsDone = Callable[[int], object] | None


def _with_bar(
    start: Callable[[ItemsDone], Iterator[list[Any]]], bar_over: Iterable[Any] | None
) -> Iterator[list[Any]]:
    bar = _progress_bar(bar_over) if bar_over is not None else None
    try:
        results = start(bar.update if bar is not None else None)
    except BaseException:
        if bar is not None:
            bar.close()
        raise
    return _finally(results, bar)


def _with_own_pool(
    make_pool: Callable[[], Pool],
    start: Callable[[Pool, ItemsDone], Iterator[list[Any]]],
    bar_over: Iterable[Any] | None,
) -> Iterator[list[Any]]:
    pool = make_pool()
    bar = _progress_bar(bar_over) if bar_over is not None else None
    try:
        yield from start(pool, bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
        pool.shutdown(wait=True, cancel_pending=True)


def _finally(results: Iterator[list[Any]], bar: Any) -> Iterator[list[Any]]:
    try:
        yield from results
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(iterable: Iterable[Any]) -> Any:
    from tqdm.auto import tqdm

    try:
        total: int | None = len(iterable)  # type: ignore[arg-type]
    except TypeError:
        total = None
    return tqdm(total=total, unit="item")


def gather(
    handles: Iterable[Handle[R]],
    on_error: Literal["raise", "skip", "return"] = "raise",
    timeout: float | None = None,
) -> list[Any]:
    """The results of ``handles``, in their order.

    ``on_error="raise"`` raises the first failure as soon as it happens
    (other tasks keep running); ``"skip"`` leaves failures out; ``"return"``
    puts the exception in the failed task's place.
    """
    _mapping.check_on_error(on_error)
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


def as_completed(handles: Iterable[Handle[R]], timeout: float | None = None) -> Iterator[Handle[R]]:
    """Yield each handle as its task ends (``TimeoutError`` if ``timeout`` passes first)."""
    return cast(Iterator[Handle[R]], concurrent.futures.as_completed(list(handles), timeout))
