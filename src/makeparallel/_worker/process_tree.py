"""The processes a task started: found and killed with the worker that ran it.

A task may start processes of its own (``subprocess``, ``multiprocessing``).
When the pool kills a worker (a timeout, a cancel, a memory limit, the
deadline of a shutdown), or a worker leaves because its parent died, those
processes must not live on as orphans. Each one is stopped (SIGSTOP) before
its own children are listed, so that none can start another while the tree
is collected; then all of them are killed.

Children are read from ``/proc/<pid>/task/<tid>/children`` on Linux, else
from the parent pid of every process in ``/proc``, else with psutil where it
is installed (macOS); without any of these only the worker itself is killed.
A process that has left the tree (a daemon that forked twice) is out of
reach. Workers import this module: it must stay light.
"""

from __future__ import annotations

import os

_signal = __import__("_signal")  # the C module (untyped): the signal package imports enum

TYPE_CHECKING = False  # no typing import at run time: workers import this module
if TYPE_CHECKING:
    from typing import Any

_listing: list[bool] = []  # whether children can be listed here, once known


def stop_descendants(pid: int) -> list[int]:
    """Stop every process descended from ``pid``, which must be stopped already.

    Returns their pids, to be killed with ``kill_all``.
    """
    found: list[int] = []
    todo = children(pid)
    while todo:
        child = todo.pop()
        try:
            os.kill(child, _signal.SIGSTOP)
        except OSError:
            continue  # it has ended already
        found.append(child)
        todo += children(child)
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, _signal.SIGKILL)
        except OSError:
            pass


def can_list_children() -> bool:
    if not _listing:
        _listing.append(os.path.isdir("/proc/self/task") or psutil_or_none() is not None)
    return _listing[0]


def children(pid: int) -> list[int]:
    """The pids of the processes whose parent is ``pid`` ([] if that cannot be read)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return _children_with_psutil(pid)
    found: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as listing:
                found += map(int, listing.read().split())
        except FileNotFoundError:
            return _children_by_parent(pid)  # a kernel without this file
        except (OSError, ValueError):
            continue  # that thread has ended
    return found


def _children_by_parent(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # the parent pid, after the state
            found.append(int(name))
    return found


def _children_with_psutil(pid: int) -> list[int]:
    psutil = psutil_or_none()
    if psutil is None:
        return []
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except Exception:
        return []


def psutil_or_none() -> Any:
    """The psutil module where it is installed (an optional extra), else None."""
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    return psutil
