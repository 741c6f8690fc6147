"""Running one map chunk: every item once, in order, at C speed between failures.

Worker processes, the in-process engines and outside executors all run
chunks with ``run_items``; only how a failure is recorded differs. This
module is imported by workers: it must stay light.
"""

from __future__ import annotations

import time
from itertools import starmap

TYPE_CHECKING = False  # no typing import at run time: workers import this module
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any, TypeVar

    E = TypeVar("E")


def run_items(
    fn: Callable[..., Any],
    star: bool,
    items: Iterable[Any],
    record: Callable[[BaseException, int], E],
    catch: type[BaseException] = BaseException,
) -> tuple[list[Any], dict[int, E], float]:
    """``fn(item)`` (``fn(*item)`` when ``star``) for every item.

    Returns the values in item order (None where an item raised),
    ``{offset: record(exception, offset)}`` and the seconds the items took.
    """
    values: list[Any] = []
    errors: dict[int, E] = {}
    remaining = iter(items)
    started = time.perf_counter()
    while True:
        # list.extend keeps what it got before an item raised, and the iterator
        # resumes after that item: each item runs once
        try:
            values.extend(starmap(fn, remaining) if star else map(fn, remaining))
            break
        except catch as exc:
            errors[len(values)] = record(exc, len(values))
            values.append(None)
    return values, errors, time.perf_counter() - started
