"""The parent's end of log and output forwarding (the worker's is ``_worker/forward.py``).

A LOG frame becomes a ``logging.LogRecord`` handled by the logger of the
same name here, so this process's handlers, formatters, filters and levels
apply; an OUTPUT frame is written to this process's current ``sys.stdout``
or ``sys.stderr`` (whatever they are now: a terminal, Jupyter's, pytest's
capture). Workers drop records below the levels ``levels()`` gives, which
are sent again when they change (``LevelWatch``).
"""

from __future__ import annotations

import logging
import sys
import time

from ..._worker import serialize

logger = logging.getLogger("makeparallel")

LEVEL_CHECK_SECONDS = 1.0  # how often a submit looks whether the levels changed


def levels() -> dict[str, int]:
    """The root logger's level (under "") and every level this process set on a logger."""
    found = {"": logging.root.level}
    for name, each in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(each, logging.Logger) and each.level != logging.NOTSET:
            found[name] = each.level
    return found


class LevelWatch:
    """Notices, at most once a second, that this process's logging levels changed."""

    def __init__(self) -> None:
        self.sent = levels()
        self._next = time.monotonic() + LEVEL_CHECK_SECONDS

    def changed(self) -> dict[str, int] | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + LEVEL_CHECK_SECONDS
        current = levels()
        if current == self.sent:
            return None
        self.sent = current
        return current


def deliver_log(body: bytes | bytearray | memoryview) -> None:
    try:
        record = logging.makeLogRecord(serialize.loads(body))
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)
    except Exception:
        logger.exception("a log record from a worker could not be handled")


def deliver_output(body: bytes | bytearray | memoryview) -> None:
    data = bytes(body)
    stream = sys.stdout if data[:1] == b"1" else sys.stderr
    try:
        stream.write(data[1:].decode("utf-8", "replace"))
        stream.flush()
    except Exception:
        pass  # no stream to write to (closed, or None under pythonw): as print would fail
