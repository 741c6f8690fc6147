"""Tasks into frames for a worker, and a worker's answers back into outcomes.

    Task --prepare (caller's thread)--> fn / context / argument bytes --frames--> worker
    worker --RESULT / ERROR / CHUNK_RESULT frame--> outcome: (True, value) or (False, exception)

Preparing happens in the submitting thread, before the task is queued, so a
value that cannot be pickled fails its own handle at once and never reaches
the pool's queue. Decoding never raises: whatever an answer's bytes do when
unpickled, ``SystemExit`` included, becomes the task's ``SerializationError``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..._memory import describe as describe_size
from ..._task import Task, from_remote, unpicklable_arguments, unpicklable_function
from ..._worker import serialize, wire
from ...errors import SerializationError

logger = logging.getLogger("makeparallel")

CACHE_SIZE = 256  # pickled functions kept for reuse
LARGE_FUNCTION = 1 << 20  # bytes: a function pickled this large is worth a warning
ANSWERS = frozenset({wire.RESULT, wire.ERROR, wire.CHUNK_RESULT})  # the frames that end a task


class Encoder:
    """Pickles what a task needs in a worker, and keeps each function's bytes under a key.

    A function is pickled once and sent to each worker once (``frames``); later
    tasks name it by its key. One defined in a module travels by reference;
    one defined in ``__main__`` by value, with the globals it uses as they
    were when it was first sent - unless this process's ``__main__`` was
    copied into the workers (``main_copy``, with ``start="fork"``) while it
    already had that very function: then by reference too.
    """

    def __init__(self) -> None:
        # by id: (the function, weakly - the cache keeps nothing alive -, bytes, key)
        self._functions: dict[int, tuple[weakref.ref[Any], bytes, int]] = {}
        self._references: dict[bytes, int] = {}  # keys of functions given as bytes already
        self._keys = itertools.count(1)
        #: what the forked workers' ``__main__`` has (name -> object); emptied if they
        #: may no longer be forked copies
        self.main_copy: dict[str, object] = {}

    def prepare(self, task: Task) -> None:
        if task.fn_data is None:
            task.fn_data, task.fn_key = self._function_bytes(task)
        elif not task.fn_key:
            task.fn_key = self._key_of(task.fn_data)
        try:
            if task.items is not None:
                payload: object = (task.star, task.items)
            else:
                # large bytes arguments travel out of band, as arrays do by themselves
                args = tuple(map(serialize.out_of_band, task.args))
                kwargs = {k: serialize.out_of_band(v) for k, v in task.kwargs.items()}
                payload = (args, kwargs)
            task.args_data = wire.blob(*serialize.dumps_with_buffers(payload))
        except Exception as problem:
            raise unpicklable_arguments(task, problem) from problem
        metadata = task.handle.metadata
        if not metadata and task.trace is None:
            task.ctx_data = _plain_context(task.handle.name)
            return
        context: tuple[object, ...] = (task.handle.name, dict(metadata))
        if task.trace is not None:
            context += (task.trace,)  # the task span's trace context (observe.otel)
        try:
            task.ctx_data = serialize.dumps(context)
        except Exception as problem:
            raise SerializationError(
                f"{task.describe()}: its metadata cannot be sent to a worker process "
                f"({type(problem).__name__}: {problem}); use plain data in metadata",
                **task.context(),
            ) from problem

    def _function_bytes(self, task: Task) -> tuple[bytes, int]:
        """The pickled function and its key, kept per function while it lives."""
        fn = task.fn
        by_name = self._in_main_copy(fn)
        known = self._functions.get(id(fn))
        if known is not None and known[0]() is fn and (known[1] is _BY_NAME) == by_name:
            data = serialize.dumps_reference(fn) if by_name else known[1]
            return data, known[2]
        try:
            if by_name:
                data = serialize.dumps_reference(fn)
            else:
                data, _ = serialize.dumps_function(fn)
        except Exception as problem:
            raise unpicklable_function(task, problem) from problem
        if len(data) > LARGE_FUNCTION:
            logger.warning(
                "%s pickles to %s: it travels by value, with the globals it uses, and is "
                "sent once to each worker. Defined in a module, it would travel by name",
                task.function_name(),
                describe_size(len(data)),
            )
        try:
            held = weakref.ref(fn)
        except TypeError:
            return data, 0  # (a builtin: pickled by name, a few bytes each time)
        if len(self._functions) >= CACHE_SIZE:
            self._functions.clear()
        key = next(self._keys)
        self._functions[id(fn)] = (held, _BY_NAME if by_name else data, key)
        return data, key

    def _in_main_copy(self, fn: Callable[..., Any]) -> bool:
        name = getattr(fn, "__qualname__", None)
        return (
            getattr(fn, "__module__", None) == "__main__"
            and name is not None
            and self.main_copy.get(name) is fn
        )

    def _key_of(self, data: bytes) -> int:
        """The key of a function given already pickled (a ``@parallel`` wrapper's reference)."""
        key = self._references.get(data)
        if key is None:
            if len(self._references) >= CACHE_SIZE:
                self._references.clear()
            key = self._references[data] = next(self._keys)
        return key


_BY_NAME = b""  # kept in place of the bytes of a function sent by name to forked workers


def frames(tasks: list[Task], known: dict[int, None]) -> list[wire.Buffer]:
    """The buffers of one write carrying ``tasks`` (prepared already) to a worker that
    has the functions whose keys are in ``known``, which this updates as the worker will."""
    buffers: list[wire.Buffer] = []
    for task in tasks:
        assert task.fn_data is not None
        assert task.args_data is not None
        assert task.ctx_data is not None
        kind = wire.TASK if task.items is None else wire.CHUNK
        if task.profile is not None:
            kind |= wire.TIMED  # the answer will carry the worker's timings
        key = task.fn_key
        fn_data = task.fn_data
        if key:
            if key in known:
                del known[key]  # used again: the most recent now
                fn_data = b""  # the worker has it
            elif len(known) >= wire.KEPT_FUNCTIONS:
                del known[next(iter(known))]  # the worker drops the same one
            known[key] = None
        buffers += wire.task_frame(
            kind, task.id, task.attempt, key, fn_data, task.ctx_data, task.args_data
        )
    return buffers


def cancel_frame(task: Task) -> list[wire.Buffer]:
    """Tells a worker to skip ``task``, which waits behind its running one."""
    return wire.frame(wire.CANCEL, task.id, ())


def outcome(task: Task, kind: int, body: bytearray, worker: str) -> tuple[bool, Any]:
    """How ``task`` ended, from its answer: ``(True, value)`` or ``(False, exception)``."""
    sample = task.profile
    if sample is not None:
        sample.answer(body)  # (the worker's timings, taken off the end)
    if task.stop_error is not None:
        return False, task.stop_error  # asked to stop, but it finished first: as asked
    if kind == wire.ERROR:
        return False, from_remote(task, bytes(body), worker)
    try:
        if kind == wire.RESULT:
            value = serialize.loads(*wire.unblob(memoryview(body)))
        else:
            value = serialize.loads(body)
    except BaseException as problem:  # SystemExit from a __reduce__ too
        return False, SerializationError(
            f"{task.describe()}: the result could not be unpickled in the parent "
            f"({type(problem).__name__}: {problem})",
            **task.context(worker),
        )
    if kind == wire.CHUNK_RESULT:
        values, blobs, seconds = value
        base = task.first_index
        errors = {i: from_remote(task, blob, worker, base + i) for i, blob in blobs.items()}
        value = (values, errors, seconds)
    if sample is not None:
        sample.loaded = time.monotonic()
    return True, value


@functools.lru_cache(maxsize=CACHE_SIZE)
def _plain_context(name: str) -> bytes:
    """The pickled task context for a name and no metadata, the common case."""
    return serialize.dumps((name, {}))
