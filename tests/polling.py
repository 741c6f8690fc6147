"""Waiting on facts the test cannot be notified of (files, the process table).

Polling here watches the outside world with a deadline; it never stands in
for synchronising threads, which the tests do with events.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

DEADLINE = 30.0


def wait_until(
    condition: Callable[[], object], timeout: float = DEADLINE, what: str = "it"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def wait_for_file(path: str, timeout: float = DEADLINE) -> None:
    """Block a task until the test creates ``path`` (a release signal across processes)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.002)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # (gone before, or while, it was read)
        return False


def stderr_after_exit(proc: subprocess.Popen[str], timeout: float, what: str) -> str:
    """Wait for ``proc`` to exit and return its stderr; kill it and fail if it does not."""
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"{what} did not exit within {timeout} s") from None
    return stderr
