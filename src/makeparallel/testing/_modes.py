"""The testing modes and the fake clock behind ``makeparallel.testing`` (see there)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from .. import _clock, _settings
from .._inline_modes import InlineMode

__all__ = [
    "FakeClock",
    "Mode",
    "deterministic",
    "fake_clock",
    "installed_clock",
    "run_pending",
    "serial",
]


class Mode:
    """A testing mode: a context manager, or ``start()``/``stop()`` for a whole session.

    Modes nest: ``stop`` (or leaving the block) brings back the mode that was
    on before, if any.
    """

    def __init__(self, inline: InlineMode) -> None:
        self._inline = inline
        self._previous: Any = None
        self._started = False

    def start(self) -> Mode:
        if self._started:
            raise RuntimeError("this mode is already on; make a new one to nest it")
        self._previous = _settings.inline_mode
        _settings.inline_mode = self._inline
        self._started = True
        return self

    def stop(self) -> None:
        """Run what a deterministic mode still holds, then turn the mode off."""
        if not self._started:
            return
        try:
            self._inline.drain()
        finally:
            _settings.inline_mode = self._previous
            self._started = False

    def __enter__(self) -> Mode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serial(check_pickle: bool = True) -> Mode:
    """Run every task inline, in the calling thread, as it is submitted.

    ``check_pickle`` (default): the function, arguments, result and exception
    still make the pickle round trip (cloudpickle where the process engine
    would use it), so what would fail in a worker process fails here; the
    exception then carries the original traceback as text in its
    ``__cause__``, as from a worker. Pools created in the block get the
    serial engine and keep it; no worker process starts.
    """
    return Mode(InlineMode(check_pickle=check_pickle))


def deterministic(seed: int = 0, check_pickle: bool = True) -> Mode:
    """Hold tasks, then run them one at a time in a seeded shuffle of submission order.

    Held tasks run when code waits for any result (``Handle.result()`` or
    ``exception()``, ``gather``, ``as_completed``, a map, ``run_pending()``)
    and when the block ends; tasks they submit run in the next shuffled round.
    The same seed gives the same order, so a test that depends on completion
    order fails, and fails again with that seed. (``concurrent.futures.wait``
    knows nothing of the mode: call ``run_pending()`` before it.)
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return Mode(InlineMode(check_pickle=check_pickle, seed=seed))


def run_pending() -> None:
    """Run every task a deterministic mode holds now (a no-op in other modes)."""
    mode = _settings.inline_mode
    if mode is not None:
        mode.drain()


class FakeClock:
    """Time for timeouts, retry back-off and circuit breakers that moves only when told.

    While it is installed (``with fake_clock() as clock``), ``advance(seconds)``
    moves time on and runs, in the calling thread, every timeout and retry that
    became due; a retry's back-off in an inline mode advances it instead of
    sleeping. Task durations (``Handle.elapsed``, metrics) keep real time.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = _clock.monotonic() if start is None else float(start)
        self._lock = threading.Lock()
        self._saved: tuple[Any, Any, bool, FakeClock | None] | None = None

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        """Same as ``monotonic()``."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` and run what became due."""
        if seconds < 0:
            raise ValueError(f"time only moves forward; got advance({seconds})")
        with self._lock:
            self._now += seconds
        for timer in list(_clock.timers):
            timer.run_due()

    def sleep(self, seconds: float) -> None:
        """``advance(seconds)``: what an inline retry's back-off does with this clock."""
        self.advance(max(0.0, seconds))

    def install(self) -> FakeClock:
        if self._saved is not None:
            raise RuntimeError("this fake clock is installed already")
        global _installed
        self._saved = (_clock.monotonic, _clock.sleep, _clock.manual, _installed)
        _clock.monotonic, _clock.sleep, _clock.manual = self.monotonic, self.sleep, True
        _installed = self
        return self

    def uninstall(self) -> None:
        if self._saved is None:
            return
        global _installed
        _clock.monotonic, _clock.sleep, _clock.manual, _installed = self._saved
        self._saved = None

    def __reduce__(self) -> tuple[Any, ...]:
        # A task that captured the clock (check_pickle makes it travel) gets the
        # installed one back, not a copy that would move on its own.
        return (installed_clock, ())

    def __enter__(self) -> FakeClock:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()


_installed: FakeClock | None = None


def installed_clock() -> FakeClock:
    """The fake clock installed in this process."""
    if _installed is None:
        raise RuntimeError(
            "no fake clock is installed in this process; a fake clock only works with tasks "
            "that run in the process that installed it (mp.testing.serial, thread pools)"
        )
    return _installed


def fake_clock(start: float | None = None) -> FakeClock:
    """A ``FakeClock`` to install with ``with``; it starts at ``start`` (default: now)."""
    return FakeClock(start)
