"""The kernel's set of descriptors the I/O thread waits on: epoll where there is one, else poll."""

from __future__ import annotations

import select
from typing import Any

from .workers import Worker

READ = select.POLLIN
WRITE = select.POLLOUT
GONE = select.POLLHUP | select.POLLERR


class Poller:
    """The kernel's set of descriptors the I/O thread waits on (epoll, else poll).

    ``register``/``unregister`` bind a descriptor to a handler and are for
    the I/O thread only. ``suspend``/``resume`` take a registered descriptor
    out of the kernel's set and put it back, each one system call, which the
    kernel makes safe from any thread: a caller reading its own answer
    (``claims``) suspends its worker's socket and pidfd so that the I/O
    thread is not woken by them meanwhile; the handler stays bound.
    """

    def __init__(self) -> None:
        self._epoll = hasattr(select, "epoll")
        self._set: Any = select.epoll() if self._epoll else select.poll()
        self.handlers: dict[int, tuple[str, Worker | None]] = {}

    def register(self, fd: int, events: int, kind: str, worker: Worker | None = None) -> None:
        self._set.register(fd, events)
        self.handlers[fd] = (kind, worker)

    def modify(self, fd: int, events: int) -> None:
        if fd in self.handlers:
            self._set.modify(fd, events)

    def unregister(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.suspend(fd)

    def suspend(self, fd: int) -> None:
        try:
            self._set.unregister(fd)
        except (KeyError, OSError, ValueError):
            pass  # not in the set (suspended already), or the set is closed

    def resume(self, fd: int, events: int) -> None:
        try:
            self._set.register(fd, events)
        except (OSError, ValueError):
            pass  # the set is closed: the I/O thread has ended

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if self._epoll:
            return self._set.poll(-1 if timeout is None else timeout)  # type: ignore[no-any-return]
        ms = None if timeout is None else int(timeout * 1000 + 0.999)
        return self._set.poll(ms)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._epoll:
            self._set.close()
        self.handlers.clear()
