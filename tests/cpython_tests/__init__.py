"""CPython's concurrent.futures tests (``tests/vendor/cpython``) as modules of this package.

``cpython_tests.executor`` is the vendored ``test_concurrent_futures/executor.py``,
and so on: this package's path is that folder, so the files' relative imports
(``from .util import ...``) work unchanged. A worker process started as a fresh
interpreter imports the tests' functions (``mul``, ``init``, ...) by these same
names, and so runs this first too.

Before any of them is imported, Python 3.11's and 3.12's ``test.support`` get
the names the 3.13 tests use, defined as 3.13 defines them: ``Py_GIL_DISABLED``,
``requires_gil_enabled`` and the ``thread`` argument of ``check_sanitizer``
and ``skip_if_sanitizer``.
"""

from __future__ import annotations

import inspect
import sysconfig
import unittest
from pathlib import Path
from typing import Any

from test import support

__path__ = [str(Path(__file__).parent.parent / "vendor" / "cpython" / "test_concurrent_futures")]


def _backport_test_support() -> None:
    if not hasattr(support, "Py_GIL_DISABLED"):
        support.Py_GIL_DISABLED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if not hasattr(support, "requires_gil_enabled"):

        def requires_gil_enabled(msg: str = "needs the GIL enabled") -> Any:
            return unittest.skipIf(support.Py_GIL_DISABLED, msg)

        support.requires_gil_enabled = requires_gil_enabled
    if "thread" in inspect.signature(support.check_sanitizer).parameters:
        return
    check_without_thread = support.check_sanitizer

    def check_sanitizer(
        *, address: bool = False, memory: bool = False, ub: bool = False, thread: bool = False
    ) -> bool:
        if not (address or memory or ub or thread):
            raise ValueError("At least one of address, memory, ub or thread must be True")
        cflags = sysconfig.get_config_var("CFLAGS") or ""
        config_args = sysconfig.get_config_var("CONFIG_ARGS") or ""
        thread_sanitizer = "-fsanitize=thread" in cflags or "--with-thread-sanitizer" in config_args
        if thread and thread_sanitizer:
            return True
        if not (address or memory or ub):
            return False
        return bool(check_without_thread(address=address, memory=memory, ub=ub))

    def skip_if_sanitizer(
        reason: str | None = None,
        *,
        address: bool = False,
        memory: bool = False,
        ub: bool = False,
        thread: bool = False,
    ) -> Any:
        skip = check_sanitizer(address=address, memory=memory, ub=ub, thread=thread)
        return unittest.skipIf(skip, reason or "not working with sanitizers active")

    support.check_sanitizer = check_sanitizer
    support.skip_if_sanitizer = skip_if_sanitizer


_backport_test_support()
