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
from collections.abc import Callable
from typing import Any

from ..._task import Task, from_remote, unpicklable_arguments, unpicklable_function
from ..._worker import serialize, wire
from ...errors import SerializationError

CACHE_SIZE = 256  # pickled functions kept for reuse
ANSWERS = frozenset({wire.RESULT, wire.ERROR, wire.CHUNK_RESULT})  # the frames that end a task


class Encoder:
    """Pickles what a task needs in a worker; keeps functions that travel by reference."""

    def __init__(self) -> None:
        self._functions: dict[int, tuple[Callable[..., Any], bytes]] = {}

    def prepare(self, task: Task) -> None:
        if task.fn_data is None:
            task.fn_data = self._function_bytes(task)
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
        if not metadata:
            task.ctx_data = _plain_context(task.handle.name)
            return
        try:
            task.ctx_data = serialize.dumps((task.handle.name, dict(metadata)))
        except Exception as problem:
            raise SerializationError(
                f"{task.describe()}: its metadata cannot be sent to a worker process "
                f"({type(problem).__name__}: {problem}); use plain data in metadata",
                **task.context(),
            ) from problem

    def _function_bytes(self, task: Task) -> bytes:
        """The pickled function; kept per function when it travels by reference."""
        key = id(task.fn)
        known = self._functions.get(key)
        if known is not None and known[0] is task.fn:
            return known[1]
        try:
            data, by_reference = serialize.dumps_function(task.fn)
        except Exception as problem:
            raise unpicklable_function(task, problem) from problem
        if by_reference:  # by value (closures, __main__) it must be pickled afresh each time
            if len(self._functions) >= CACHE_SIZE:
                self._functions.clear()
            self._functions[key] = (task.fn, data)  # holding fn keeps its id unique
        return data


def frames(tasks: list[Task]) -> list[wire.Buffer]:
    """The buffers of one write carrying ``tasks``, prepared already."""
    buffers: list[wire.Buffer] = []
    for task in tasks:
        assert task.fn_data is not None
        assert task.args_data is not None
        assert task.ctx_data is not None
        kind = wire.TASK if task.items is None else wire.CHUNK
        buffers += wire.task_frame(
            kind, task.id, task.attempt, task.fn_data, task.ctx_data, task.args_data
        )
    return buffers


def cancel_frame(task: Task) -> list[wire.Buffer]:
    """Tells a worker to skip ``task``, which waits behind its running one."""
    return wire.frame(wire.CANCEL, task.id, ())


def outcome(task: Task, kind: int, body: bytearray, worker: str) -> tuple[bool, Any]:
    """How ``task`` ended, from its answer: ``(True, value)`` or ``(False, exception)``."""
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
    return True, value


@functools.lru_cache(maxsize=CACHE_SIZE)
def _plain_context(name: str) -> bytes:
    """The pickled task context for a name and no metadata, the common case."""
    return serialize.dumps((name, {}))
