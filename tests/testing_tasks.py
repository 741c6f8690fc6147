"""Module-level functions for the testing-mode tests (importable by worker processes)."""

from __future__ import annotations

import os
import threading

import makeparallel as mp


def where(x: int) -> tuple[int, int, str]:
    return x, os.getpid(), threading.current_thread().name


@mp.parallel
def remote_where(x: int) -> tuple[int, int, str]:
    return where(x)


def fail_until(attempt: int) -> str:
    if mp.current_task().attempt < attempt:
        raise ConnectionError("the service is down")
    return "up"


def echo(x: object) -> object:
    return x


def returns_lock() -> object:
    return threading.Lock()


class Unpicklable(Exception):
    def __init__(self, resource: object, message: str) -> None:
        super().__init__(message)
        self.resource = resource

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("this exception cannot be pickled")


def raise_unpicklable() -> None:
    raise Unpicklable(threading.Lock(), "held a lock")


def divide(a: int, b: int) -> float:
    return a / b


def nested_sum(n: int) -> int:
    """Submits ``n`` tasks and waits for them: inside a task, as user code may."""
    return sum(mp.gather([mp.parallel(echo)(i) for i in range(n)]))  # type: ignore[misc]
