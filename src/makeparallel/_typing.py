"""Types that exist for the type checker only: what a ``@parallel`` wrapper looks like
from outside, and the per-call options by name. Imported under ``TYPE_CHECKING`` (and
by the typing tests), never on the way to running a task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypedDict, TypeVar

if TYPE_CHECKING:
    from ._options import BackendSpec
    from .handle import Handle
    from .policies import CircuitBreaker, Retry
    from .pool import Pool

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class ParallelCallable(Protocol[P, R]):
    """A ``@parallel`` function, with or without ``.options(...)``: a call returns a
    ``Handle``, and a pool or a map given one runs the plain function behind it,
    so their results are the function's own values, not handles."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Handle[R]: ...

    def _reference_bytes(self) -> bytes | None: ...


class FutureOf(Protocol[R_co]):
    """A handle or any ``concurrent.futures.Future`` seen through its result: unlike
    ``Future[R]`` (invariant), handles of different result types make one list of
    ``FutureOf[int | str]``, so ``gather(handles)`` is a ``list[int | str]``."""

    def result(self, timeout: float | None = None) -> R_co: ...

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...


class CallOptions(TypedDict, total=False):
    """The keyword options of ``parallel(...)`` and ``fn.options(...)`` (``OPTION_NAMES``)."""

    name: str | None
    metadata: Mapping[str, Any] | None
    backend: BackendSpec | None
    pool: Pool | None
    timeout: float | None
    retry: Retry | None
    circuit_breaker: CircuitBreaker | None


class IterOptions(TypedDict, total=False):
    """The keyword options of ``imap`` but ``on_error`` (which decides its result type)."""

    workers: int | None
    chunksize: int | None
    ordered: bool
    timeout: float | None


class MapOptions(IterOptions, total=False):
    """The keyword options of ``parallel_map`` but ``on_error``."""

    progress: bool
