"""The options of a ``@parallel`` function, checked: what ``parallel()`` and
``options()`` accept, and what they refuse with a clear error."""

from __future__ import annotations

import concurrent.futures
import enum
import functools
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ._checks import check_timeout
from .backends import ENGINE_NAMES
from .pool import Pool


class Keep(enum.Enum):
    """The default of an option that ``configure`` leaves as it is when not given."""

    KEEP = "keep"


KEEP = Keep.KEEP

if TYPE_CHECKING:
    from .policies import CircuitBreaker, Retry

BackendName = Literal["auto", "process", "thread", "serial", "interpreter"]
BackendSpec = BackendName | concurrent.futures.Executor


def check_backend(backend: object) -> None:
    if isinstance(backend, concurrent.futures.Executor):
        return
    if not isinstance(backend, str) or backend not in ENGINE_NAMES:
        raise ValueError(
            f"unknown backend {backend!r}: use one of {', '.join(map(repr, ENGINE_NAMES))} "
            "or pass a concurrent.futures.Executor instance"
        )


OPTION_NAMES = ("name", "metadata", "backend", "pool", "timeout", "retry", "circuit_breaker")


class Options:
    """A ``@parallel`` function's options; never changed once made (``changed`` copies)."""

    __slots__ = OPTION_NAMES

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

    def changed(self, **changes: Any) -> Options:
        values = {name: getattr(self, name) for name in OPTION_NAMES}
        return Options(**{**values, **changes})


def make_options(base: Options, overrides: dict[str, Any]) -> Options:
    unknown = sorted(set(overrides) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)}; accepted: {', '.join(OPTION_NAMES)}"
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
        check_backend(overrides["backend"])
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


def check_function(fn: object) -> None:
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
