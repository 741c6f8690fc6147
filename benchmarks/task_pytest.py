"""The function of ``program_first_batch.py``'s batch, in a module that imports pytest.

pytest is a heavy import (a few hundred modules). ``program_first_batch.py``
imports this module only after its pool has started and run one task, so
the workers have not imported it yet: the first batch of tasks that needs
it shows what that costs a pool whose workers are fresh interpreters, or
forks taken before the import, against one that forks its workers later.
The work itself is pure Python (``workloads.spin``).
"""

# ruff: noqa: F401  (the import is the point: what a heavy module costs a new worker)

from __future__ import annotations

import pytest

from workloads import spin


def crunch(n: int) -> int:
    """``n`` turns of pure-Python arithmetic (about 70 ms for the calibrated ``n``)."""
    return spin(n)
