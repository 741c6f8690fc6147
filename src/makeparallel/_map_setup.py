"""What wraps a map's batches: a progress bar over its items, a pool of its own, each
closed when the map ends (also when its caller stops early)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pool import Pool

ItemsDone = Callable[[int], object] | None


def with_bar(
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


def with_own_pool(
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
