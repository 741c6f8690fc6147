"""One thread per pool that runs callbacks at given times (timeouts, retry back-off).

It never runs user code: callbacks are the pool's own short functions.
Times are ``_clock.monotonic()`` seconds, immune to wall-clock changes (a
fake clock in tests replaces them, and then runs due callbacks itself). The
thread starts with the first callback and leaves after ``_LINGER`` seconds
with none, so a pool without timeouts has no timer thread, and one that is
garbage-collected does not leave one behind.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable

from . import _clock

logger = logging.getLogger("makeparallel")
_LINGER = 5.0  # seconds the thread waits for another callback before it leaves


class TimerEntry:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def __lt__(self, other: TimerEntry) -> bool:
        return self.when < other.when


class Timer:
    def __init__(self, name: str) -> None:
        self._name = name
        self._heap: list[tuple[float, int, TimerEntry]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        _clock.timers.add(self)

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerEntry:
        entry = TimerEntry(when, callback)
        with self._wake:
            if self._closed:
                raise RuntimeError("the timer is closed")
            heapq.heappush(self._heap, (when, next(self._order), entry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._wake.notify()
        return entry

    def cancel(self, entry: TimerEntry) -> None:
        with self._wake:
            if entry.cancelled:
                return
            entry.cancelled = True
            self._cancelled += 1
            if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                # drop dead entries so a long run of finished timeouts cannot pile up
                self._heap = [item for item in self._heap if not item[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._heap.clear()
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def run_due(self) -> None:
        """Run every callback whose time has come, in this thread (a fake clock's advance)."""
        while True:
            with self._wake:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled = max(0, self._cancelled - 1)
                if self._closed or not self._heap or self._heap[0][0] > _clock.monotonic():
                    return
                entry = heapq.heappop(self._heap)[2]
                entry.cancelled = True
            try:
                entry.callback()
            except BaseException:  # as on the timer's thread: later callbacks must still run
                logger.exception("makeparallel timer callback failed")

    def _loop(self) -> None:
        while True:
            with self._wake:
                while True:
                    if self._closed:
                        return
                    if self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                        self._cancelled = max(0, self._cancelled - 1)
                        continue
                    if not self._heap:
                        if not self._wake.wait(_LINGER) and not (self._heap or self._closed):
                            self._thread = None  # call_at starts another when one is needed
                            return
                        continue
                    if _clock.manual:  # a fake clock runs due callbacks as it advances
                        self._wake.wait(_LINGER)
                        continue
                    delay = self._heap[0][0] - _clock.monotonic()
                    if delay <= 0:
                        entry = heapq.heappop(self._heap)[2]
                        entry.cancelled = True
                        break
                    self._wake.wait(delay)
            try:
                entry.callback()
            except BaseException:  # whatever it is, later timeouts must still fire
                logger.exception("makeparallel timer callback failed")
