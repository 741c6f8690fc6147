"""Testing code that uses makeparallel: serial and deterministic modes, a fake clock.

    import makeparallel as mp

    with mp.testing.serial():            # every task runs inline, pickled as a worker would
        assert mp.parallel_map(str, [1, 2]) == ["1", "2"]

    with mp.testing.deterministic(seed=3):   # held, then run one at a time, shuffled
        ...

    with mp.testing.fake_clock() as clock:   # timeouts, back-off, breakers: no sleeping
        clock.advance(30)

The modes are process-wide, like ``mp.configure``: they cover every
``@parallel`` call, ``parallel_map``/``imap``/``gather`` and every ``Pool``,
created in the block or before it. The pytest plugin (``plugin``) builds
fixtures, a command-line option and a marker on them. docs/testing.md has
the rules and examples. Importing this package starts no thread or process.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._modes import (
        FakeClock,
        Mode,
        deterministic,
        fake_clock,
        installed_clock,
        run_pending,
        serial,
    )

__all__ = [
    "FakeClock",
    "Mode",
    "deterministic",
    "fake_clock",
    "installed_clock",
    "run_pending",
    "serial",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that importing the pytest plugin (a submodule) stays light.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    __import__(f"{__name__}._modes")
    value = getattr(sys.modules[f"{__name__}._modes"], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
