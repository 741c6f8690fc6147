"""Applying one function to many items: chunking, a bounded window, ordering.

    input iterator --(read lazily)--> chunks of items --> at most `window` chunk tasks in flight
                                                                 |
    caller <--(in input order, or as completed)-- per-item outcomes

Input is pulled only when a chunk slot frees up, so an endless generator
works and memory stays bounded. Items are grouped into chunks so that tiny
functions are not drowned by the cost of one round trip per item: with a
known length, chunks that shrink towards the end (see _ChunkSizer); with an
unknown length, chunk sizes adapt until one chunk takes about
``_TARGET_CHUNK_SECONDS``.

When a chunk fails as a whole (its worker died, its items could not be
pickled), its items are retried one by one, so exactly the item at fault
reports the error and no other item is lost.

Results travel in batches (one list per chunk) as far as the caller:
``parallel_map`` extends its list a chunk at a time, and the lazy iterators
step through each list with ``itertools.chain``, so a map of tiny items does
not pay for Python steps per item.
"""

from __future__ import annotations

import concurrent.futures
import math
import queue
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice, repeat
from typing import Any, Literal, Protocol, TypeVar, cast

from . import _settings
from ._task import ChunkValue
from ._worker import serialize
from .handle import Handle

R = TypeVar("R")

OnError = Literal["raise", "skip", "return"]
ON_ERROR_CHOICES = ("raise", "skip", "return")

_TARGET_CHUNK_SECONDS = 0.02
_MAX_CHUNK = 10_000
_CHUNKS_PER_WORKER = 4
# With a known length, each chunk takes this share of what is left per worker, so
# chunks shrink towards the end of the map (no worker is left with a long last chunk
# while the others idle), down to this share of the whole per worker.
_SMALLEST_SHARE = 32
# Run the rest of a map inline when an item runs faster than this many times
# its pickling (see _runs_inline).
_INLINE_RATIO = 4.0
_MIN_MEASURED_ITEMS = 64  # fewer items do not measure a per-item cost
# A busy machine only ever makes a measured chunk look slower: one that says
# "run here" is believed at once, one that says "ship" is checked on up to
# this many chunks before the map stops measuring.
_MEASURED_CHUNKS = 3


class ChunkPool(Protocol):
    """What a map needs of the pool it runs on."""

    @property
    def workers(self) -> int: ...

    def start_map(self, fn: Callable[..., Any]) -> tuple[Callable[..., Any], bytes | None]:
        """Check that a map may start here and now; the function to run and its bytes."""

    def submit_chunk(
        self,
        fn: Callable[..., Any],
        items: list[Any],
        first_index: int,
        fn_data: bytes | None,
        item_timeout: float | None,
        star: bool,
    ) -> Handle[ChunkValue]:
        """Queue one task that runs ``fn`` on each item."""

    def may_run_inline(self) -> bool:
        """Whether chunks may run in the caller's thread when that is faster."""

    def take_back(self, handle: Handle[ChunkValue]) -> bool:
        """Withdraw a chunk no worker has taken (it will run in the caller's thread);
        False if it has started. A withdrawn chunk is not counted in the pool's metrics."""

    def run_chunk_here(
        self, fn: Callable[..., Any], items: list[Any], first_index: int, star: bool
    ) -> tuple[list[Any], dict[int, BaseException]]:
        """Run one chunk in this thread: its values and ``{offset: error}``."""


class _Chunk:
    __slots__ = ("first_index", "handle", "here", "items", "pickle_seconds", "single")

    def __init__(
        self, handle: Handle[ChunkValue], first_index: int, items: list[Any], single: bool
    ) -> None:
        self.handle = handle
        self.first_index = first_index
        self.items = items
        self.single = single  # a retry of one item: its failure is that item's outcome
        self.pickle_seconds: float | None = None  # what pickling its items costs (first chunks)
        self.here = False  # taken back before it started, to run in the caller's thread


def before_wait() -> None:
    """Called before waiting for results: a deterministic testing mode runs its held tasks."""
    mode = _settings.inline_mode
    if mode is not None:
        mode.before_wait()


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
    """How many items go in the next chunk.

    A fixed ``chunksize`` is kept. With a known length, the first chunks hold a
    quarter of each worker's share and later ones a quarter of what is left
    per worker (guided scheduling): items of uneven cost - compiling files of
    very different sizes - then end together, where equal chunks leave one
    worker finishing a long last chunk alone. With an unknown length, chunks
    grow until one takes about ``_TARGET_CHUNK_SECONDS``.
    """

    def __init__(self, fixed: int | None, length: int | None, workers: int) -> None:
        self.automatic = fixed is None
        self.adaptive = fixed is None and length is None
        self.workers = max(1, workers)
        self.left: int | None = None  # items not yet in a chunk (guided sizes)
        self.smallest = 1
        if fixed is not None:
            self.size = fixed
        elif length is not None:
            self.size = max(1, min(_MAX_CHUNK, self._share(length, _CHUNKS_PER_WORKER)))
            self.left = length
            self.smallest = max(1, min(self.size, self._share(length, _SMALLEST_SHARE)))
        else:
            self.size = 1

    def _share(self, items: int, parts: int) -> int:
        return math.ceil(items / (self.workers * parts))

    def next_size(self) -> int:
        if self.left is None:
            return self.size
        guided = min(self.size, self._share(self.left, _CHUNKS_PER_WORKER))
        return max(self.smallest, guided)

    def took(self, items: int) -> None:
        if self.left is not None:
            self.left = max(0, self.left - items)

    def observe(self, items: int, seconds: float | None) -> None:
        """A chunk of ``items`` ran in ``seconds`` (None: not measured)."""
        if not self.automatic or seconds is None or items == 0:
            return
        per_item = seconds / items
        wanted = _MAX_CHUNK if per_item <= 0 else int(_TARGET_CHUNK_SECONDS / per_item)
        if self.left is not None:
            # No chunk need be shorter than that: smaller ones would add round trips
            # (tiny items keep large chunks to the end)
            self.smallest = max(self.smallest, min(self.size, wanted))
        elif items >= self.size:
            self.size = max(1, min(_MAX_CHUNK, wanted, self.size * 4))


class _Items(chain[Any]):
    """The items of a map's batches, one after the other, each let go once handed out.

    ``itertools.chain`` steps through a batch at C speed, where a generator
    costs a resume per item (about 5 ms per 200 000 items here). Each batch is
    reversed and popped from its end (``map(list.pop, ...)``, also C), so the
    iterator keeps no reference to an item it has yielded: a caller that drops
    a large result frees it at once, as ``Executor.map`` promises. Like a
    generator it has ``close()``; dropping it closes the batches too. Either
    way a caller that stops early cancels what is still queued.
    """

    __slots__ = ("_batches",)
    _batches: Iterator[list[Any]]

    def close(self) -> None:
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()
        for _ in self:
            pass  # what is left of the batch at hand: after close() nothing comes out


def _handed_out(batch: list[Any]) -> Iterator[Any]:
    """The items of ``batch`` in order, each removed from it as it comes out."""
    batch.reverse()
    return map(list.pop, repeat(batch, len(batch)))


def flatten(batches: Iterator[list[R]]) -> Iterator[R]:
    items = cast(_Items, _Items.from_iterable(map(_handed_out, batches)))
    items._batches = batches
    return items


def executor_map(
    pool: ChunkPool,
    fn: Callable[..., R],
    iterables: tuple[Iterable[Any], ...],
    timeout: float | None,
    chunksize: int | None,
) -> Iterator[R]:
    """``Executor.map``: the input is read and every chunk submitted at once, as the
    standard executors do (the call starts the work, iterating is only collecting);
    results in input order. ``imap`` is the lazy one, with a bounded window."""
    if not iterables:
        raise TypeError("map needs at least one iterable")
    # One iterable goes as it is: a list is then sliced, not zipped item by item.
    items: list[Any] | tuple[Any, ...] | range
    if len(iterables) == 1:
        first = iterables[0]
        items = first if type(first) in (list, tuple, range) else list(first)  # type: ignore[assignment]
    else:
        items = list(zip(*iterables, strict=False))
    batches = imap_batches(
        pool,
        fn,
        items,
        chunksize=chunksize,
        ordered=True,
        star=len(iterables) > 1,
        deadline=None if timeout is None else time.monotonic() + timeout,
        window=None,
    )
    next(batches)  # every chunk is submitted now (the first step yields no result)
    return flatten(batches)


def imap_batches(
    pool: ChunkPool,
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
    length: int | None = None,
    window: int | None = 0,
) -> Iterator[list[R]]:
    """Apply ``fn`` to every item; each step gives the results of one chunk, as a list
    (``flatten`` turns them into items). Arguments are checked at once, not at the
    first ``next()``; the first step submits the first chunks and gives ``[]``.

    ``length``: how many items there will be, when ``iterable`` cannot say.
    ``window``: how many chunks may be in flight (0: two per worker; None: all).
    """
    check_map_arguments(fn, chunksize, on_error)
    fn, fn_data = pool.start_map(fn)
    if length is None:
        length = _length_hint(iterable)
    items = _batches_of(iterable)
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
        window,
    )


def _batches_of(iterable: Iterable[Any]) -> Callable[[int], list[Any]]:
    """A function giving the next ``n`` items as a list (an empty list at the end).

    Lists, tuples and ranges are sliced, several times faster than stepping an
    iterator item by item; anything else is read lazily.
    """
    if type(iterable) in (list, tuple, range):
        sequence: Any = iterable
        position = 0

        def sliced(n: int) -> list[Any]:
            nonlocal position
            batch = sequence[position : position + n]
            position += len(batch)
            return batch if type(batch) is list else list(batch)

        return sliced
    iterator = iter(iterable)
    return lambda n: list(islice(iterator, n))


def _length_hint(iterable: Iterable[Any]) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _results(
    pool: ChunkPool,
    fn: Callable[..., Any],
    items: Callable[[int], list[Any]],
    fn_data: bytes | None,
    sizer: _ChunkSizer,
    ordered: bool,
    star: bool,
    on_error: OnError,
    deadline: float | None,
    item_timeout: float | None,
    on_items_done: Callable[[int], object] | None,
    window: int | None,
) -> Iterator[list[Any]]:
    measuring = max(2, pool.workers * 2)  # small chunks at most, before a measure decides
    if window == 0:
        window = measuring
    in_flight: deque[_Chunk] = deque()
    completed: queue.SimpleQueue[_Chunk] = queue.SimpleQueue()
    next_index = 0
    exhausted = False
    # Automatic chunks may end up running here, in the caller's thread (see _runs_inline).
    may_run_here = sizer.automatic and item_timeout is None and pool.may_run_inline()
    decided = not may_run_here
    measured = 0
    here = False

    def submit(first: int, batch: list[Any], single: bool) -> _Chunk:
        handle = pool.submit_chunk(fn, batch, first, fn_data, item_timeout, star)
        chunk = _Chunk(handle, first, batch, single)
        if not decided:
            chunk.pickle_seconds = _pickle_seconds(batch)
        if not ordered:
            chunk.handle.add_done_callback(lambda _: completed.put(chunk))
        return chunk

    def refill() -> None:
        nonlocal next_index, exhausted, measuring
        while not exhausted and not here and (window is None or len(in_flight) < window):
            # Until a chunk has measured the items, chunks are small (a few of them).
            size = sizer.next_size()
            if not decided and measuring > 0:
                size = min(size, _MIN_MEASURED_ITEMS)
                measuring -= 1
            batch = items(size)
            if not batch:
                exhausted = True
                return
            sizer.took(len(batch))
            in_flight.append(submit(next_index, batch, single=len(batch) == 1))
            next_index += len(batch)

    def wait_for(chunk: _Chunk) -> None:
        before_wait()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        concurrent.futures.wait([chunk.handle], timeout=remaining)
        if not chunk.handle.done():
            raise TimeoutError("map did not finish within its timeout")

    def next_done() -> _Chunk:
        before_wait()
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

    def run_here() -> tuple[list[Any], dict[int, BaseException]] | None:
        """The next chunk, run in this thread; None when the input is used up."""
        nonlocal next_index
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("map did not finish within its timeout")
        batch = items(sizer.next_size())
        if not batch:
            return None
        sizer.took(len(batch))
        values, errors = pool.run_chunk_here(fn, batch, next_index, star)
        next_index += len(batch)
        return values, errors

    consumed = False  # Executor.map: dropped before any result was asked for, work goes on
    try:
        refill()
        yield []  # the first chunks are on their way (Executor.map starts the work at once)
        consumed = True
        while in_flight or here:
            if in_flight:
                chunk = next_done()
                position = in_flight.index(chunk) if not ordered else 0
                del in_flight[position]
                if chunk.here:
                    values, errors = pool.run_chunk_here(fn, chunk.items, chunk.first_index, star)
                    if on_items_done is not None:
                        on_items_done(len(values))
                    yield from _outcomes(values, errors, on_error)
                    continue
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
                    values, errors, seconds = chunk.handle.result()
                    sizer.observe(len(chunk.items), seconds)
                    if not decided and len(chunk.items) >= _MIN_MEASURED_ITEMS:
                        measured += 1
                        here = _runs_inline(chunk, seconds)
                        decided = here or measured >= _MEASURED_CHUNKS
                        if here:
                            _take_back(pool, in_flight)
                refill()
            else:
                outcome = run_here()
                if outcome is None:
                    break
                values, errors = outcome
            if on_items_done is not None:
                on_items_done(len(values))
            yield from _outcomes(values, errors, on_error)
    except KeyboardInterrupt:
        _cancel(in_flight, running_too=True)
        raise
    finally:
        if consumed:  # the caller stopped early: what waits is not wanted
            _cancel(in_flight, running_too=False)


def _outcomes(
    values: list[Any], errors: dict[int, BaseException], on_error: OnError
) -> Iterator[list[Any]]:
    """One chunk's results as batches, its failures handled as ``on_error`` says."""
    if not errors:
        yield values
        return
    batch: list[Any] = []
    for offset, value in enumerate(values):
        failure = errors.get(offset)
        if failure is None:
            batch.append(value)
        elif on_error == "raise":
            if batch:
                yield batch  # the items before the failure come out first
            raise failure
        elif on_error == "return":
            batch.append(failure)
    yield batch


def _take_back(pool: ChunkPool, in_flight: Iterable[_Chunk]) -> None:
    """Withdraw the chunks no worker has taken yet; they will run in the caller's thread."""
    for chunk in in_flight:
        if chunk.handle.state == "pending" and pool.take_back(chunk.handle):
            chunk.here = True


def _runs_inline(chunk: _Chunk, seconds: float | None) -> bool:
    """Whether the rest of the map should run in the caller's thread.

    True when an item runs in less than ``_INLINE_RATIO`` times what it costs
    to pickle it. Each item is pickled and unpickled twice on its trip (item
    and result, in the parent and in a worker), and the parent does half of
    that work itself, one item after the other: below this ratio no number
    of workers wins back what the trip costs.
    """
    if seconds is None or chunk.pickle_seconds is None:
        return False
    return seconds < _INLINE_RATIO * chunk.pickle_seconds


def _pickle_seconds(batch: list[Any]) -> float:
    started = time.perf_counter()
    try:
        serialize.dumps(batch)
    except Exception:
        return 0.0  # the pool reports the error; this only measures
    return time.perf_counter() - started


def _cancel(chunks: Iterable[_Chunk], running_too: bool) -> None:
    for chunk in list(chunks):
        if running_too or chunk.handle.state == "pending":
            chunk.handle.cancel()
