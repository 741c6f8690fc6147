"""Checking what Pool and configure are given: a clear error, naming the fix, for bad input."""

from __future__ import annotations

import _thread
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, Literal

from ._checks import check_timeout
from ._memory import parse_size
from ._sizing import usable_cpus
from .backends.base import WorkerSetup

#: how worker processes start (``Pool(start=...)``, ``configure(start=...)``)
StartMethod = Literal["auto", "spawn", "fork"]


def check_workers(value: object, parameter: str = "workers") -> int | None:
    """None, or a whole number >= 1 (the message for ``max_workers`` is the Executor's)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{parameter} must be a whole number >= 1 or None, got {value!r}")
    if value < 1:
        if parameter == "max_workers":
            # the words of concurrent.futures, which code written for executors looks for
            raise ValueError(f"max_workers must be greater than 0, got {value}")
        hint = (
            "leave it as None to use every usable CPU"
            if parameter == "workers"
            else "use None for no limit"
        )
        raise ValueError(f"{parameter} must be >= 1, got {value}; {hint}")
    return value


def check_start(start: object) -> str:
    if start not in ("auto", "spawn", "fork"):
        raise ValueError(
            f"start must be 'auto' (fork when that is safe, else fresh interpreters), 'spawn' "
            f"(fresh interpreters) or 'fork' (copies of this process), got {start!r}"
        )
    if start == "fork" and not hasattr(os, "fork"):
        raise ValueError(f"start='fork' needs os.fork, which {sys.platform} does not have")
    return str(start)


def why_not_fork() -> str | None:
    """Why forking this process now could harm the copy (None: nothing known to).

    A fork copies only the thread that calls it: a lock another Python thread
    holds stays held in the copy for ever (CPython warns about forking then).
    macOS's system libraries are not safe to use after a fork, and neither is
    an initialized CUDA context.
    """
    if not hasattr(os, "fork"):
        return f"{sys.platform} has no fork"
    if sys.platform != "linux":
        return f"system libraries of {sys.platform} are not safe to use after a fork"
    threads = _thread._count()
    if threads:
        return f"{threads} other Python thread(s) run in this process"
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized():
                return "CUDA is initialized in this process"
        except Exception:
            pass
    return None


def resolve_start(start: str) -> str:
    """What ``start="auto"`` means now: ``"fork"`` if nothing known makes it unsafe."""
    if start != "auto":
        return start
    return "fork" if why_not_fork() is None else "spawn"


def check_memory_action(action: object) -> str:
    if action not in ("recycle", "kill"):
        raise ValueError(
            f"memory_limit_action must be 'recycle' (replace the worker after its task) or "
            f"'kill' (stop the task at once with MemoryLimitError), got {action!r}"
        )
    return str(action)


def pool_sizes(
    workers: int | None, min_workers: int | None, max_workers: int | None
) -> tuple[int, int]:
    """(most, least) workers: fixed with ``workers``, a range with ``min/max_workers``."""
    check_workers(min_workers, "min_workers")
    check_workers(max_workers, "max_workers")
    fixed = check_workers(workers)
    if fixed is not None and (min_workers is not None or max_workers is not None):
        raise ValueError(
            "give either workers=N (a fixed size) or min_workers/max_workers (a range), not both"
        )
    if min_workers is None and max_workers is None:
        count = fixed or usable_cpus()
        return count, count
    most = max_workers if max_workers is not None else max(usable_cpus(), min_workers or 1)
    least = min_workers if min_workers is not None else 1
    if least > most:
        raise ValueError(
            f"min_workers ({least}) must not exceed max_workers ({most}): the pool scales "
            "between the two"
        )
    return most, least


def worker_setup(
    workers: int | None,
    min_workers: int | None,
    max_workers: int | None,
    idle_timeout: float | None,
    max_tasks_per_worker: int | None,
    memory_limit: int | str | None,
    memory_limit_action: str,
    initializer: Callable[..., object] | None,
    initargs: Iterable[Any],
    start: str,
    forward_logs: bool = True,
) -> tuple[int, int, WorkerSetup]:
    """Pool's arguments about its workers, checked: (most, least, how each starts and lives)."""
    count, least = pool_sizes(workers, min_workers, max_workers)
    idle_timeout = check_timeout(idle_timeout, "idle_timeout")
    if idle_timeout is not None and least == count:
        raise ValueError(
            "idle_timeout retires idle workers down to min_workers: give min_workers "
            "and max_workers too (e.g. Pool(min_workers=1, max_workers=8, idle_timeout=60))"
        )
    if initializer is not None and not callable(initializer):
        raise TypeError(f"initializer must be callable or None, got {initializer!r}")
    if isinstance(initargs, str | bytes) or not isinstance(initargs, Iterable):
        raise TypeError(f"initargs must be a tuple of arguments, got {initargs!r}")
    setup = WorkerSetup(
        initializer=initializer,
        initargs=tuple(initargs),
        max_tasks=check_workers(max_tasks_per_worker, "max_tasks_per_worker"),
        min_workers=least if least != count else None,
        idle_timeout=idle_timeout,
        memory_limit=None if memory_limit is None else parse_size(memory_limit),
        memory_kill=check_memory_action(memory_limit_action) == "kill",
        start=check_start(start),
        forward_logs=_check_flag(forward_logs, "forward_logs"),
    )
    return count, least, setup


def _check_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value
