"""A worker's log records and printed output, sent to the parent (``Pool(forward_logs=True)``).

    task: log.info(...) --> root's _Ship handler --> LOG frame --> parent: the logger
                                                                  of the same name
    task: print(...) ----> sys.stdout (_Output) --> OUTPUT frame --> parent's sys.stdout

Both travel on the worker's socket, in order, and a task's output is flushed
before its answer: whatever a task logged or printed has been handled in
the parent by the time its result is there.

``logging`` is not imported for this (a worker starts faster without it):
the handler is installed when something imports ``logging`` - at once in a
forked worker, which has it from the parent. Records below the level the
parent set (its root logger's, and the loggers it configured) are dropped
here, never sent. A forked worker's copies of the parent's handlers are
removed, so that nothing is written twice.
"""

from __future__ import annotations

import io
import os
import sys

from . import serialize, wire
from .on_import import AfterImport

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Channel(Protocol):
        def send(self, buffers: list[wire.Buffer]) -> None: ...


_channel: Channel | None = None
_levels: dict[str, int] = {}  # logger name ("" for the root) -> the parent's level
_task: tuple[int, str] = (0, "")  # the task running now (its id, its name), for records
_handler: Any = None


def install(channel: Channel, levels: dict[str, int]) -> None:
    global _channel
    _channel = channel
    _levels.update(levels)
    sys.stdout = _Output(channel, b"1", sys.stdout)
    sys.stderr = _Output(channel, b"2", sys.stderr)
    if "logging" in sys.modules:
        _take_logging()
    else:
        sys.meta_path.insert(0, AfterImport("logging", lambda module: _take_logging()))


def running(task_id: int, name: str) -> None:
    global _task
    _task = (task_id, name)


def finished() -> None:
    """The task ended: what it printed goes out before its answer."""
    global _task
    _task = (0, "")
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, _Output):
            stream.flush()


def set_levels(levels: dict[str, int]) -> None:
    """The parent's levels changed."""
    _levels.clear()
    _levels.update(levels)
    if _handler is not None:
        _apply_levels()


class _Output(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a worker: whole lines go to the parent."""

    def __init__(self, channel: Channel, which: bytes, original: Any) -> None:
        self._channel = channel
        self._which = which
        self._original = original
        self._pending: list[str] = []

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._pending.append(text)
        if "\n" in text:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        body = self._which + text.encode("utf-8", "replace")
        self._channel.send(wire.frame(wire.OUTPUT, _task[0], (body,)))

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return int(self._original.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


def _take_logging() -> None:
    global _handler
    import logging

    manager = logging.Logger.manager
    loggers = [logging.getLogger()] + [
        each for each in list(manager.loggerDict.values()) if isinstance(each, logging.Logger)
    ]
    for logger in loggers:  # a forked worker's copies of the parent's handlers
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        if logger is not logging.root:
            logger.propagate = True  # to the root, whose handler sends it
    _handler = _ship_handler(logging)
    logging.root.addHandler(_handler)
    _apply_levels()


def _apply_levels() -> None:
    import logging

    for name, level in _levels.items():
        logging.getLogger(name or None).setLevel(level)


def _ship_handler(logging: Any) -> Any:
    class Ship(logging.Handler):  # type: ignore[misc]
        def emit(self, record: Any) -> None:
            try:
                task_id, task_name = _task
                if task_id and not hasattr(record, "task_id"):
                    record.task_id, record.task_name = task_id, task_name
                record.worker_pid = os.getpid()
                data = _record_bytes(record, self)
                if _channel is not None:
                    _channel.send(wire.frame(wire.LOG, task_id, (data,)))
            except RecursionError:
                raise
            except BaseException:
                self.handleError(record)

    return Ship()


_PLAIN = (str, int, float, bool, type(None))


def _record_bytes(record: Any, handler: Any) -> bytes:
    """The record as the parent rebuilds it: its message formatted, its exception as text."""
    fields = dict(record.__dict__)
    fields["msg"] = record.getMessage()
    fields["args"] = None
    if record.exc_info:
        fields["exc_text"] = record.exc_text or _formatter(handler).formatException(record.exc_info)
    fields["exc_info"] = None
    fields.pop("message", None)
    try:
        return serialize.dumps(fields)
    except BaseException:
        # Something in it cannot be pickled (an object passed in ``extra``): keep the
        # record's own fields and the formatted message; never lose the record.
        plain = {key: value for key, value in fields.items() if isinstance(value, _PLAIN)}
        return serialize.dumps(plain)


def _formatter(handler: Any) -> Any:
    import logging

    return handler.formatter or logging.Formatter()
