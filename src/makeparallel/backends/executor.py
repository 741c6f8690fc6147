"""The executor engine: hand every task to an existing ``concurrent.futures.Executor``.

This is how a pool grows beyond one machine without makeparallel writing
its own distribution: pass a Dask ``Client.get_executor()``, a Ray or loky
executor, or any other ``Executor`` as ``backend=``. The wrapped executor
does its own queueing and sizing; makeparallel keeps the handles, errors
and callbacks.
"""

from __future__ import annotations

import concurrent.futures
import functools
from typing import Any

from .._task import ChunkValue, Task, annotate, context_note, unpicklable_arguments
from .._worker.chunk import run_items
from ..errors import SerializationError
from .base import Backend, Sink


def _run_items(fn: Any, star: bool, items: list[Any]) -> ChunkValue:
    """Runs on the executor's side (perhaps another machine): plain exceptions per item."""
    return run_items(fn, star, items, lambda exc, _: exc, catch=Exception)


class ExecutorBackend(Backend):
    kind = "executor"

    def __init__(
        self, executor: concurrent.futures.Executor, pool_name: str, *, owned: bool = False
    ) -> None:
        super().__init__(workers=0, pool_name=pool_name)
        self.executor = executor
        self.owned = owned  # True when the pool created the executor and must shut it down

    def start(self, sink: Sink) -> None:
        self._sink = sink

    def poke(self) -> None:
        while (task := self._sink.take()) is not None:
            task.assign(type(self.executor).__name__)
            if task.items is None:
                future = self.executor.submit(task.fn, *task.args, **task.kwargs)
            else:
                future = self.executor.submit(_run_items, task.fn, task.star, task.items)
            future.add_done_callback(functools.partial(self._done, task))

    def _done(self, task: Task, future: concurrent.futures.Future[Any]) -> None:
        try:
            value = future.result()
        except BaseException as exc:
            error = self._not_sent(task, exc) or annotate(exc, context_note(task, task.worker))
            self._sink.finished(task, False, error)
            return
        if task.items is not None:
            values, errors, seconds = value
            base = task.first_index
            value = (
                values,
                {
                    i: annotate(e, context_note(task, task.worker, base + i))
                    for i, e in errors.items()
                },
                seconds,
            )
        self._sink.finished(task, True, value)

    def _not_sent(self, task: Task, exc: BaseException) -> SerializationError | None:
        """The error for a call that a ``ProcessPoolExecutor`` could not pickle, naming the
        fix (its own error only says that a local object cannot be pickled); else None."""
        if not isinstance(self.executor, concurrent.futures.ProcessPoolExecutor):
            return None  # threads pickle nothing; cluster executors use cloudpickle
        import pickle

        if not isinstance(exc, pickle.PicklingError | AttributeError | TypeError):
            return None
        try:
            pickle.dumps(task.fn)
        except Exception as problem:
            error = SerializationError(
                f"{task.describe()}: {type(self.executor).__name__} could not send the "
                f"function {task.function_name()} ({type(problem).__name__}: {problem}); "
                "that executor pickles with the standard pickle, which sends a function only "
                "by its importable name. Define it at module level, or use backend='process' "
                "(makeparallel's own workers send lambdas and closures with cloudpickle)",
                **task.context(),
            )
        else:
            try:
                pickle.dumps((task.args, task.kwargs, task.items))
            except Exception as problem:
                error = unpicklable_arguments(task, problem)
            else:
                return None  # the task itself raised it
        error.__cause__ = exc
        return error

    def close(self, deadline: float | None, wait: bool = True) -> None:
        if self.owned:
            self.executor.shutdown(wait=wait)
        # otherwise the executor belongs to the caller, who shuts it down
