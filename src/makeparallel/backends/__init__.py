"""Execution engines, one module each, behind the small interface in ``base``."""

from __future__ import annotations

import concurrent.futures
import sys

from .. import _settings
from .base import NO_SETUP, Backend, WorkerSetup

ENGINE_NAMES = ("auto", "process", "thread", "serial", "interpreter")


def gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


def resolve_kind(spec: str) -> str:
    """The engine ``backend="auto"`` (or a name) stands for on this interpreter."""
    if spec == "auto":
        from .._worker import state

        if state.in_worker():
            return "serial"  # nested parallelism inside a worker would oversubscribe the CPUs
        return "process" if gil_enabled() else "thread"
    return spec


def create_backend(
    spec: str | concurrent.futures.Executor,
    workers: int,
    pool_name: str,
    setup: WorkerSetup = NO_SETUP,
) -> Backend:
    if setup.start == "fork" and (
        isinstance(spec, concurrent.futures.Executor) or resolve_kind(spec) != "process"
    ):
        raise ValueError(
            f"start={setup.start!r} says how worker processes begin, so it needs "
            "backend='process' (or 'auto' on a GIL build of CPython)"
        )
    if (isinstance(spec, concurrent.futures.Executor) or spec == "interpreter") and (
        setup.shapes_workers()
    ):
        raise ValueError(
            "initializer, max_tasks_per_worker, min_workers and idle_timeout apply to "
            "makeparallel's own process and thread workers; configure the executor you "
            "pass instead"
        )
    if isinstance(spec, concurrent.futures.Executor):
        from .executor import ExecutorBackend

        return ExecutorBackend(spec, pool_name)
    if not isinstance(spec, str) or spec not in ENGINE_NAMES:
        raise ValueError(
            f"unknown backend {spec!r}: use one of {', '.join(map(repr, ENGINE_NAMES))} "
            "or pass a concurrent.futures.Executor instance"
        )
    kind = resolve_kind(spec)
    inline = _settings.inline_mode
    if inline is not None:  # a testing or debug mode: no worker starts (see _inline_modes)
        from .serial import SerialBackend

        plain = WorkerSetup(setup.initializer, setup.initargs)
        return SerialBackend(workers, pool_name, plain, check_pickle=inline.check_pickle)
    if kind == "process":
        from .._arguments import resolve_start
        from .process import ProcessBackend

        return ProcessBackend(workers, pool_name, setup.starting(resolve_start(setup.start)))
    if setup.memory_limit is not None and kind != "process":
        raise ValueError(
            "memory_limit is per worker process; threads share their process's memory, "
            "so it needs backend='process'"
        )
    if kind == "thread":
        from .thread import ThreadBackend

        return ThreadBackend(workers, pool_name, setup)
    if kind == "serial":
        if setup.max_tasks is not None:
            raise ValueError(
                "max_tasks_per_worker recycles worker processes or threads; the serial "
                "engine runs tasks in the calling thread and has no worker to recycle"
            )
        from .serial import SerialBackend

        return SerialBackend(workers, pool_name, setup)
    return _interpreter_backend(workers, pool_name)


def _interpreter_backend(workers: int, pool_name: str) -> Backend:
    executor_class = getattr(concurrent.futures, "InterpreterPoolExecutor", None)
    if executor_class is None:
        raise ValueError(
            "backend='interpreter' needs Python 3.14 or newer (concurrent.futures."
            f"InterpreterPoolExecutor); this is Python {sys.version.split()[0]}. "
            "Use backend='process' instead."
        )
    from .executor import ExecutorBackend

    return ExecutorBackend(executor_class(max_workers=workers), pool_name, owned=True)
