"""Set-up for the Python blocks of README.md and docs/, which run as tests.

pytest-markdown-docs runs each block in a fresh namespace; the default pool
behind ``@parallel`` and ``parallel_map`` is process-wide, so a block that
changes it (``mp.configure``) must not change it for the next one.
"""

from __future__ import annotations

import pytest

import makeparallel as mp


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if item.get_closest_marker("markdown-docs") is not None:
        mp.configure(workers=None, backend="auto")
