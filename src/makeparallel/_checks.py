"""Checks of the numbers of seconds users pass (timeouts, waits, deadlines)."""

from __future__ import annotations

import math


def _is_real(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    import numbers  # (only for other real types, such as NumPy's float32)

    return isinstance(value, numbers.Real)


def check_seconds(name: str, value: object, *, allow_zero: bool = True) -> float:
    if not _is_real(value):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return number


def check_timeout(value: object, name: str = "timeout") -> float | None:
    """None, or a positive finite number of seconds."""
    if value is None:
        return None
    if not _is_real(value):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}")
    seconds = float(value)  # type: ignore[arg-type]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(
            f"{name} must be a finite number of seconds > 0, got {value!r}; use None for no timeout"
        )
    return seconds
