"""Process-wide settings that several modules read and a few public calls write.

They live here, at the bottom of the import graph, so that an engine can
read a setting without importing the pool (which imports the engines).
This module must never import the rest of the package.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # no typing import at run time (worker processes read this module)
if TYPE_CHECKING:
    from typing import Any

#: set by configure(): at a normal exit, how long submitted work may still run (None: no limit)
exit_timeout: float | None = 60.0

#: set by install_signal_handlers(): exit gracefully, but no later than this (monotonic clock)
graceful_exit_deadline: float | None = None

#: set by install_signal_handlers(): new worker processes ignore SIGTERM sent to the group
workers_ignore_sigterm = False

#: set by configure(debug=True) or MAKEPARALLEL_DEBUG=1: every task runs inline, logged,
#: and handles keep their call for rerun_inline() even when they succeed
debug = os.environ.get("MAKEPARALLEL_DEBUG", "").strip().lower() not in ("", "0", "false", "no")

#: set by makeparallel.testing's serial and deterministic modes and by debug mode: the
#: ``_inline_modes.InlineMode`` that runs every submitted task instead of its pool's engine
inline_mode: Any = None
