"""The one clock that timeouts, retry back-off and circuit breakers read.

Everything that decides "is it time yet?" - the pool's timer (timeouts and
retry back-off) and ``CircuitBreaker`` - calls ``monotonic()`` here instead
of ``time.monotonic()``, so that ``makeparallel.testing.fake_clock`` can
replace time for a test: it swaps these names and, on each ``advance``, runs
what became due in the advancing thread. By default they *are* the
``time`` functions, so the seam costs one module attribute read, as
``time.monotonic()`` does.

This module must never import the rest of the package.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Protocol

#: seconds on a clock that never goes back (``time.monotonic`` unless a fake clock is in use)
monotonic: Callable[[], float] = time.monotonic

#: waits that are part of the semantics, not synchronisation (an inline retry's back-off)
sleep: Callable[[float], None] = time.sleep

#: True while a fake clock owns time: timers fire only when it advances
manual = False


class DueRunner(Protocol):
    def run_due(self) -> None:
        """Run, in this thread, every callback whose time has come."""


#: every live timer, so that a fake clock can run what its advance made due
timers: weakref.WeakSet[DueRunner] = weakref.WeakSet()
