"""A pool made on first use in each process and closed at interpreter exit.

Web servers load the app, then often fork their workers: a pool made at
load time would belong to the parent. ``LazyPool`` makes one per process,
at the first ``get()`` there, and closes it when that process exits, with
its own deadline for the tasks still running.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..pool import Pool


class LazyPool:
    def __init__(
        self,
        options: dict[str, Any],
        shutdown_timeout: float | None,
        make: Callable[..., Pool] = Pool,
    ) -> None:
        self.options = options
        self.shutdown_timeout = shutdown_timeout
        self._make = make
        self._lock = threading.Lock()
        self._pool: Pool | None = None
        self._pid = 0

    def get(self) -> Pool:
        pool = self._pool
        if pool is not None and self._pid == os.getpid() and pool._open:
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid() or not self._pool._open:
                # In a forked process the parent's pool has no workers: make our own.
                # One shut down on purpose (at the end of a test) is replaced too.
                self._pool = self._make(**self.options)
                self._pid = os.getpid()
                atexit.register(_close, weakref.ref(self._pool), self.shutdown_timeout)
            return self._pool

    def made(self) -> Pool | None:
        """The pool of this process if it was made, without making one."""
        return self._pool if self._pid == os.getpid() else None


def _close(ref: weakref.ref[Pool], timeout: float | None) -> None:
    # Registered after makeparallel's own exit hook, so it runs first, with this deadline.
    pool = ref()
    if pool is not None:
        pool.shutdown(wait=True, timeout=timeout)
