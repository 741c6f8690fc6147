"""install_signal_handlers(): SIGTERM and SIGINT become a graceful shutdown with a deadline.

    SIGTERM / SIGINT -> handler raises SystemExit(128 + signum) / KeyboardInterrupt
                     -> the program unwinds normally (finally blocks run, locks are released)
                     -> at exit every pool cancels its queued tasks, lets running ones
                        finish until the deadline, then stops the rest

The handler itself does nothing but raise: shutting pools down inside a
signal handler could deadlock on a lock the interrupted code was holding.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType

from . import _settings
from ._checks import check_timeout

__all__ = ["install_signal_handlers"]


def install_signal_handlers(
    timeout: float = 30.0,
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Make ``signals`` shut every pool down gracefully within ``timeout`` seconds.

    On the first such signal the program exits (``SystemExit(128 + signum)``,
    or ``KeyboardInterrupt`` for SIGINT); on the way out queued tasks are
    cancelled, running ones get until the deadline to finish, and the rest
    are stopped. A second signal is handled the default way (immediately).
    Call it from the main thread, before creating pools: workers started
    afterwards ignore SIGTERM sent to the whole process group, and leave
    when the pool tells them to (or when this process dies).
    """
    seconds = check_timeout(timeout)
    if threading.current_thread() is not threading.main_thread():
        raise ValueError(
            "install_signal_handlers() must be called from the main thread "
            "(Python delivers signals only there)"
        )
    chosen = tuple(signals)
    for signum in chosen:
        if not isinstance(signum, int):
            raise TypeError(f"signals must be signal numbers, got {signum!r}")

    def handle(signum: int, frame: FrameType | None) -> None:
        for other in chosen:
            signal.signal(other, signal.SIG_DFL)  # a second signal acts at once
        _settings.graceful_exit_deadline = time.monotonic() + (seconds or 0.0)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    for signum in chosen:
        signal.signal(signum, handle)
    _settings.workers_ignore_sigterm = signal.SIGTERM in chosen
