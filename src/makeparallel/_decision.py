"""What a finished attempt means for its task: succeed, retry later, or fail.

The pool asks ``decide`` and acts on the answer. It reads a task's ``Retry``
only through ``should_retry`` and ``delay``, so this module needs nothing of
``policies`` and a pool without policies never imports them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from .errors import TaskCancelledError

if TYPE_CHECKING:
    from .policies import Retry


class Decision:
    """How a finished attempt ends its task; the pool acts on it (``decide``)."""

    __slots__ = ("breaker", "delay", "outcome")

    def __init__(
        self,
        outcome: Literal["succeed", "retry", "fail"],
        delay: float = 0.0,  # seconds before the next attempt ("retry")
        breaker: Literal["success", "failure", "release"] | None = None,  # told to the breaker
    ) -> None:
        self.outcome = outcome
        self.delay = delay
        self.breaker = breaker

    def __repr__(self) -> str:
        return f"Decision({self.outcome!r}, delay={self.delay!r}, breaker={self.breaker!r})"


_SUCCEED = Decision("succeed")
_SUCCEED_TELL_BREAKER = Decision("succeed", breaker="success")
_FAIL = Decision("fail")


def decide(
    ok: bool,
    error: BaseException | None,
    attempt: int,
    retry: Retry | None,
    has_breaker: bool,
    may_retry: bool = True,
) -> Decision:
    """What to do with attempt number ``attempt``, which succeeded (``ok``) or raised ``error``.

    A cancelled call gives its circuit breaker no verdict: it lets another
    trial call through instead.
    """
    if ok:
        return _SUCCEED_TELL_BREAKER if has_breaker else _SUCCEED
    assert error is not None
    if may_retry and retry is not None and retry.should_retry(error, attempt):
        return Decision("retry", delay=retry.delay(attempt))
    if not has_breaker:
        return _FAIL
    return Decision(
        "fail", breaker="release" if isinstance(error, TaskCancelledError) else "failure"
    )
