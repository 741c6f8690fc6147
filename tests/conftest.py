"""Shared fixtures: one pool per engine per test module, and a clean default pool.

Every pool made here is shut down when its scope ends. Tasks that must block
wait on a ``threading.Event`` the test sets (thread engine) so no test relies
on sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import makeparallel as mp

#: how long a test waits for something that should happen almost at once
DEADLINE = 10.0

# CPython's tests, vendored unchanged (vendor/cpython/README.md), are not collected as they
# are; the Django project's modules load once test_integration_django has set Django up.
collect_ignore = ["vendor", "django_project"]


@pytest.fixture(scope="session", autouse=True)
def _shutdown_every_pool_at_the_end() -> Iterator[None]:
    yield
    mp.configure(workers=None, backend="auto")
    mp.shutdown(wait=True, cancel_pending=True, timeout=DEADLINE)


@pytest.fixture(scope="module")
def thread_pool() -> Iterator[mp.Pool]:
    pool = mp.Pool(workers=2, backend="thread", name="tests-thread")
    yield pool
    pool.shutdown(wait=True, cancel_pending=True, timeout=DEADLINE)


@pytest.fixture(scope="module")
def one_thread_pool() -> Iterator[mp.Pool]:
    """A pool with a single worker thread: a blocked task keeps the next ones pending."""
    pool = mp.Pool(workers=1, backend="thread", name="tests-one-thread")
    yield pool
    pool.shutdown(wait=True, cancel_pending=True, timeout=DEADLINE)


@pytest.fixture(scope="module")
def process_pool() -> Iterator[mp.Pool]:
    pool = mp.Pool(workers=2, backend="process", name="tests-process")
    yield pool
    pool.shutdown(wait=True, cancel_pending=True, timeout=DEADLINE)


@pytest.fixture(scope="module")
def serial_pool() -> Iterator[mp.Pool]:
    pool = mp.Pool(backend="serial", name="tests-serial")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def reset_default_pool() -> Iterator[None]:
    """For tests that use or change the default pool: start from, and leave, the defaults."""
    mp.configure(workers=None, backend="auto")
    yield
    mp.configure(workers=None, backend="auto")
