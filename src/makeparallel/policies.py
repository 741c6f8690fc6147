"""Retry and circuit-breaker policies: small values that decide, never execute.

``Retry`` answers two questions - should this failure be tried again, and
after how long - and the pool acts on the answer by queueing a fresh attempt
(possibly on another worker). Waits compose like tenacity's: ``Fixed(0.5)``,
``Exponential(initial=0.1, factor=2, maximum=10)``, or any callable from the
attempt number to seconds, and ``a + b`` adds two waits.

``CircuitBreaker`` counts consecutive failed calls of the functions it is
attached to; past the threshold it opens and calls fail at once with
``CircuitOpenError``, until ``reset_timeout`` passes and one trial call is
let through (half-open): its success closes the circuit, its failure opens
it again.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from . import _clock
from ._checks import _is_real, check_seconds
from .errors import SerializationError, TaskCancelledError, TaskError

__all__ = ["CircuitBreaker", "CircuitState", "Exponential", "Fixed", "Retry"]

logger = logging.getLogger("makeparallel")

Wait = Callable[[int], float]


class _Composable:
    def __call__(self, attempt: int) -> float:
        raise NotImplementedError

    def __add__(self, other: Wait) -> _Sum:
        return _Sum(self, other)


@dataclass(frozen=True)
class _Sum(_Composable):
    first: Wait
    second: Wait

    def __call__(self, attempt: int) -> float:
        return self.first(attempt) + self.second(attempt)


@dataclass(frozen=True)
class Fixed(_Composable):
    """The same wait before every retry."""

    seconds: float = 1.0

    def __post_init__(self) -> None:
        check_seconds("Fixed(seconds)", self.seconds)

    def __call__(self, attempt: int) -> float:
        return float(self.seconds)


@dataclass(frozen=True)
class Exponential(_Composable):
    """``initial * factor ** (attempt - 1)`` seconds, capped at ``maximum``."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0

    def __post_init__(self) -> None:
        check_seconds("Exponential(initial)", self.initial)
        check_seconds("Exponential(maximum)", self.maximum)
        if isinstance(self.factor, bool) or not _is_real(self.factor) or self.factor < 1:
            raise ValueError(f"Exponential(factor) must be a number >= 1, got {self.factor!r}")

    def __call__(self, attempt: int) -> float:
        return float(min(self.maximum, self.initial * self.factor ** max(0, attempt - 1)))


_NEVER_RETRIED = (SerializationError, TaskCancelledError)


@dataclass(frozen=True)
class Retry:
    """Try a failed task again, up to ``attempts`` attempts in all.

    ``retry_on`` lists the exception types worth another attempt (default:
    any ``Exception`` the task raises). makeparallel's own failures - a
    timeout (``TaskTimeoutError``) or a dead worker (``WorkerCrashedError``) -
    are retried only when listed explicitly, because repeating them often
    repeats the harm. ``give_up_on`` wins over ``retry_on``. ``backoff`` is
    the wait before attempt n+1 (seconds or a callable of n); ``jitter`` adds
    up to that fraction of the wait at random, so many tasks do not retry in
    lock step.
    """

    attempts: int = 3
    backoff: float | Wait = field(default_factory=Exponential)
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"Retry(attempts) must be a whole number, got {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(
                f"Retry(attempts) counts every try including the first, so it must be >= 1, "
                f"got {self.attempts}; use attempts=1 for no retry"
            )
        if not callable(self.backoff):
            check_seconds("Retry(backoff)", self.backoff)
        for label, given in (("retry_on", self.retry_on), ("give_up_on", self.give_up_on)):
            types = (given,) if isinstance(given, type) else given
            object.__setattr__(self, label, tuple(types))
            if not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
                raise TypeError(f"Retry({label}) must be exception types, got {given!r}")
        jitter = check_seconds("Retry(jitter)", self.jitter)
        if jitter > 1:
            raise ValueError(f"Retry(jitter) is a fraction of the wait in [0, 1], got {jitter}")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether ``error`` on attempt number ``attempt`` deserves another attempt."""
        if attempt >= self.attempts or isinstance(error, _NEVER_RETRIED + self.give_up_on):
            return False
        if isinstance(error, TaskError):
            # only when the policy names makeparallel's failure explicitly
            return any(issubclass(t, TaskError) and isinstance(error, t) for t in self.retry_on)
        return isinstance(error, self.retry_on)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        base = self.backoff(attempt) if callable(self.backoff) else float(self.backoff)
        if self.jitter:
            base += base * self.jitter * random.random()
        return max(0.0, base)


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_breakers: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()  # for exporters


def live_breakers() -> list[CircuitBreaker]:
    """Every circuit breaker not yet garbage-collected."""
    return list(_breakers)


class CircuitBreaker:
    """Stop calling a function that keeps failing; try again after ``reset_timeout`` seconds.

    One breaker may be shared by several functions. ``state`` tells where it
    is; ``on_state_change(old, new)`` is called (and a log line written) at
    every transition.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        *,
        name: str | None = None,
        on_state_change: Callable[[CircuitState, CircuitState], object] | None = None,
    ) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise TypeError(f"failure_threshold must be a whole number, got {failure_threshold!r}")
        if failure_threshold < 1:
            raise ValueError(
                f"failure_threshold must be >= 1 (failures in a row that open the circuit), "
                f"got {failure_threshold}"
            )
        self.reset_timeout = check_seconds("reset_timeout", reset_timeout, allow_zero=False)
        if on_state_change is not None and not callable(on_state_change):
            raise TypeError("on_state_change must be callable or None")
        self.failure_threshold = failure_threshold
        self.name = name or f"breaker-{id(self):x}"
        self._on_state_change = on_state_change
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_running = False
        _breakers.add(self)

    @property
    def state(self) -> CircuitState:
        with self._lock:
            changes = self._refresh()
        self._announce(changes)
        return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures counted so far."""
        return self._failures

    def _refresh(self) -> list[tuple[CircuitState, CircuitState]]:
        if (
            self._state is CircuitState.OPEN
            and _clock.monotonic() - self._opened_at >= self.reset_timeout
        ):
            return [self._move(CircuitState.HALF_OPEN)]
        return []

    def _move(self, new: CircuitState) -> tuple[CircuitState, CircuitState]:
        old, self._state = self._state, new
        if new is CircuitState.OPEN:
            self._opened_at = _clock.monotonic()
        if new is not CircuitState.HALF_OPEN:
            self._trial_running = False
        return old, new

    def _announce(self, changes: list[tuple[CircuitState, CircuitState]]) -> None:
        for old, new in changes:
            level = logging.WARNING if new is CircuitState.OPEN else logging.INFO
            logger.log(level, "circuit breaker %s: %s -> %s", self.name, old, new)
            if self._on_state_change is not None:
                try:
                    self._on_state_change(old, new)
                except Exception:
                    logger.exception("on_state_change of circuit breaker %s raised", self.name)

    def allow(self) -> bool:
        """May a call start now? In half-open state only one trial call may."""
        with self._lock:
            changes = self._refresh()
            if self._state is CircuitState.CLOSED:
                allowed = True
            elif self._state is CircuitState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                allowed = True
            else:
                allowed = False
        self._announce(changes)
        return allowed

    def retry_after(self) -> float:
        """Seconds until an open circuit lets a trial call through."""
        with self._lock:
            if self._state is not CircuitState.OPEN:
                return 0.0
            return max(0.0, self.reset_timeout - (_clock.monotonic() - self._opened_at))

    def release_trial(self) -> None:
        """A call ended without a verdict (cancelled): let another trial through."""
        with self._lock:
            self._trial_running = False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            changes = (
                [] if self._state is CircuitState.CLOSED else [self._move(CircuitState.CLOSED)]
            )
        self._announce(changes)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            changes = []
            if self._state is CircuitState.HALF_OPEN or (
                self._state is CircuitState.CLOSED and self._failures >= self.failure_threshold
            ):
                changes.append(self._move(CircuitState.OPEN))
        self._announce(changes)

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self.name} state={self._state} failures={self._failures}/"
            f"{self.failure_threshold}>"
        )
