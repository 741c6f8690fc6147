"""Applying one function to many items: chunking, a bounded window, ordering.

    input iterator --(read lazily)--> chunks of items --> at most `window` chunk tasks in flight
                                                                 |
    caller <--(in input order, or as completed)-- per-item outcomes

Input is pulled only when a chunk slot frees up, so an endless generator
works and memory stays bounded. Items are grouped into chunks so that tiny
functions are not drowned by the cost of one round trip per item: with a
known length, about four chunks per worker; with an unknown length, chunk
sizes adapt until one chunk takes about ``_TARGET_CHUNK_SECONDS``.

When a chunk fails as a whole (its worker died, its items could not be
pickled), its items are retried one by one, so exactly the item at fault
reports the error and no other item is lost.
"""

from __future__ import annotations

import concurrent.futures
import math
import queue
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .handle import Handle

if TYPE_CHECKING:
    from .pool import Pool

R = TypeVar("R")

OnError = Literal["raise", "skip", "return"]
ON_ERROR_CHOICES = ("raise", "skip", "return")

_TARGET_CHUNK_SECONDS = 0.02
_MAX_CHUNK = 10_000
_CHUNKS_PER_WORKER = 4


@dataclass
class _Chunk:
    handle: Handle[tuple[list[Any], dict[int, BaseException]]]
    first_index: int
    items: list[Any]
    single: bool  # a retry of one item: its failure is that item's outcome


def check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(
            f"on_error must be one of {', '.join(map(repr, ON_ERROR_CHOICES))}, got {on_error!r}"
        )


def check_map_arguments(fn: object, chunksize: object, on_error: str) -> None:
    if not callable(fn):
        raise TypeError(f"map needs a callable, got {type(fn).__name__}: {fn!r}")
    check_chunksize(chunksize)
    check_on_error(on_error)


def check_chunksize(chunksize: object) -> None:
    if chunksize is None:
        return
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"chunksize must be a whole number >= 1 or None, got {chunksize!r}")


class _ChunkSizer:
    def __init__(self, fixed: int | None, length: int | None, workers: int) -> None:
        self.adaptive = fixed is None and length is None
        if fixed is not None:
            self.size = fixed
        elif length is not None:
            per_worker = math.ceil(length / (max(1, workers) * _CHUNKS_PER_WORKER))
            self.size = max(1, min(_MAX_CHUNK, per_worker))
        else:
            self.size = 1

    def observe(self, items: int, seconds: float | None) -> None:
        if not self.adaptive or seconds is None or items < self.size:
            return
        per_item = seconds / items
        wanted = _MAX_CHUNK if per_item <= 0 else int(_TARGET_CHUNK_SECONDS / per_item)
        self.size = max(1, min(_MAX_CHUNK, wanted, self.size * 4))


def imap(
    pool: Pool,
    fn: Callable[..., R],
    iterable: Iterable[Any],
    *,
    chunksize: int | None = None,
    ordered: bool = True,
    star: bool = False,
    on_error: OnError = "raise",
    deadline: float | None = None,
    item_timeout: float | None = None,
    on_items_done: Callable[[int], object] | None = None,
) -> Iterator[R]:
    """Validate at once (not at the first ``next()``), then return the lazy iterator."""
    check_map_arguments(fn, chunksize, on_error)
    pool._check_open()
    length = _length_hint(iterable)
    items = iter(iterable)
    from .pool import unwrap_parallel

    fn, fn_data = unwrap_parallel(fn)
    fn_data = fn_data or pool._prepare_function(fn)
    sizer = _ChunkSizer(chunksize, length, pool.workers)
    return _results(
        pool,
        fn,
        items,
        fn_data,
        sizer,
        ordered,
        star,
        on_error,
        deadline,
        item_timeout,
        on_items_done,
    )


def _length_hint(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _results(
    pool: Pool,
    fn: Callable[..., Any],
    items: Iterator[Any],
    fn_data: bytes | None,
    sizer: _ChunkSizer,
    ordered: bool,
    star: bool,
    on_error: OnError,
    deadline: float | None,
    item_timeout: float | None,
    on_items_done: Callable[[int], object] | None,
) -> Iterator[Any]:
    window = max(2, pool.workers * 2)
    in_flight: deque[_Chunk] = deque()
    completed: queue.SimpleQueue[_Chunk] = queue.SimpleQueue()
    next_index = 0
    exhausted = False

    def submit(first: int, batch: list[Any], single: bool) -> _Chunk:
        handle = pool._submit_chunk(fn, batch, first, fn_data, item_timeout, star)
        chunk = _Chunk(handle, first, batch, single)
        if not ordered:
            chunk.handle.add_done_callback(lambda _: completed.put(chunk))
        return chunk

    def refill() -> None:
        nonlocal next_index, exhausted
        while not exhausted and len(in_flight) < window:
            batch = list(islice(items, sizer.size))
            if not batch:
                exhausted = True
                return
            in_flight.append(submit(next_index, batch, single=len(batch) == 1))
            next_index += len(batch)

    def wait_for(chunk: _Chunk) -> None:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        concurrent.futures.wait([chunk.handle], timeout=remaining)
        if not chunk.handle.done():
            raise TimeoutError("map did not finish within its timeout")

    def next_done() -> _Chunk:
        if ordered:
            chunk = in_flight[0]
            wait_for(chunk)
            return chunk
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("map did not finish within its timeout")
            try:
                chunk = completed.get(timeout=remaining)
            except queue.Empty:
                continue
            if chunk in in_flight:
                return chunk

    try:
        refill()
        while in_flight:
            chunk = next_done()
            position = in_flight.index(chunk) if not ordered else 0
            del in_flight[position]
            error = chunk.handle.exception()
            if error is not None and not chunk.single:
                # Retry item by item so only the item at fault fails, in its place.
                retries = [
                    submit(chunk.first_index + i, [item], single=True)
                    for i, item in enumerate(chunk.items)
                ]
                for offset, retry in enumerate(retries):
                    in_flight.insert(position + offset, retry)
                continue
            if error is not None:
                values, errors = [None], {0: error}
            else:
                values, errors = chunk.handle.result()
            sizer.observe(len(chunk.items), chunk.handle.elapsed)
            refill()
            if on_items_done is not None:
                on_items_done(len(values))
            if not errors:
                yield from values
                continue
            for offset, value in enumerate(values):
                failure = errors.get(offset)
                if failure is None:
                    yield value
                elif on_error == "raise":
                    raise failure
                elif on_error == "return":
                    yield failure
    except KeyboardInterrupt:
        _cancel(in_flight, running_too=True)
        raise
    finally:
        _cancel(in_flight, running_too=False)


def _cancel(chunks: Iterable[_Chunk], running_too: bool) -> None:
    for chunk in list(chunks):
        if running_too or chunk.handle.state == "pending":
            chunk.handle.cancel()
