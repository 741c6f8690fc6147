"""CPython's own concurrent.futures tests, run against ``mp.Pool`` and ``mp.Handle``.

The tests are CPython 3.13.0's ``Lib/test/test_concurrent_futures``, vendored
unmodified in ``tests/vendor/cpython`` and imported as ``cpython_tests.*``
(``tests/cpython_tests``). This module only mixes them with pools of
makeparallel's own, as CPython's ``util.py`` mixes them with its executors:
each engine mixin gives ``executor_type``, which the tests call with
``max_workers=`` (CPython's worker counts: 5, and 2 for the initializer
tests) as code written for any executor does; ``Pool(max_workers=5)`` is a
pool of 1 to 5 workers.

What runs, on the thread engine, the process engine with ``start="spawn"``
and the process engine with ``start="fork"``:

- ``executor.ExecutorTest``: submit, map, map's timeout, shutdown during a
  map, stale references, ``max_workers`` checks, results freed by ``map``;
  with, from ``test_thread_pool``, ``test_map_submits_without_iteration`` and
  ``test_executor_map_current_future_cancel`` on the thread engine (their
  tasks record calls in the test's process), and from ``test_process_pool``,
  ``test_map_chunksize`` and ``test_ressources_gced_in_workers`` on the
  process engine;
- ``test_wait.WaitTests`` (and ``test_pending_calls_race`` on the thread
  engine) and ``test_as_completed.AsCompletedTests``;
- ``test_shutdown.ExecutorShutdownTest``;
- ``test_init.InitializerMixin`` and ``test_init.FailingInitializerMixin``.

And ``test_future.FutureTests``, with every ``Future`` the tests build a
``mp.Handle``: the module-level ``Future`` of ``util`` and ``test_future``
is replaced, and so are the futures ``util`` builds in each state (the tests
set their ``_state``, ``_result`` and ``_exception``).

Adapted, each in one place below:

- ``test_interpreter_shutdown``, ``test_submit_after_interpreter_shutdown``,
  ``test_hang_gh83386`` and ``test_cancel_futures_wait_false`` run a script in
  a fresh interpreter that imports the executor by its name from
  ``concurrent.futures``; here the same script and checks make the pool with
  ``makeparallel.Pool`` (``test_cancel_futures_wait_false``, for
  ``ThreadPoolExecutor`` only in CPython, runs on every engine).
- ``FutureTests`` expects reprs starting ``<Future at``: ``Future.__repr__``
  prints the class's name, so for a Handle they read ``<Handle at``.
- ``FutureTests`` reads a failing done-callback's log record on stderr, where
  logging's last-resort handler prints it when no handler is configured; under
  pytest, whose log capture configures one, that handler is added to the
  ``concurrent.futures`` logger for these tests.
- ``FailingInitializerMixin`` looks for the initializer's error among the
  records of the ``concurrent.futures`` logger at CRITICAL, where
  ``ThreadPoolExecutor`` logs it; makeparallel logs it on its own logger at
  ERROR, and that is where it is looked for.
- When ``test_ressources_gced_in_workers`` fails, the Manager it started and
  the object it passed are let go with the failure, not in a later test (the
  object's ``__del__`` calls the Manager and would fail that later test).
- A test fails after 20 s instead of the suite's 120: the longest takes 6.

Excluded, and why:

- ``test_deadlock.py``, all 16 tests: each builds its executor with
  ``mp_context=``, an argument of ``ProcessPoolExecutor`` only, and on a hang
  terminates ``executor._processes``. What they check is how
  ``ProcessPoolExecutor``'s threads and queues survive a work item or result
  that fails to pickle or unpickle, or a worker that dies: 9 expect
  ``BrokenProcessPool``, the whole pool broken, where a makeparallel worker
  that crashes or cannot unpickle its task fails only that task
  (``WorkerCrashedError``, ``SerializationError``) and the pool goes on
  (README, "How it compares"); 6 expect the ``PicklingError``, ``SystemExit``
  or ``RuntimeError`` raised on the way through those queues; one replaces
  ``ProcessPoolExecutor``'s private ``_ThreadWakeup`` and manager thread.
- ``test_process_pool``: ``test_killed_child`` (terminates a worker from
  ``executor._processes`` and expects the whole pool broken, as above),
  ``test_traceback`` (expects the cause to be the private
  ``concurrent.futures.process._RemoteTraceback``; makeparallel attaches the
  worker's traceback as a cause of its own type), ``test_saturation``,
  ``test_idle_process_reuse_one`` and ``test_idle_process_reuse_multiple``
  (count ``executor._processes``, ``ProcessPoolExecutor``'s private table of
  workers), ``test_max_tasks_per_child``,
  ``test_max_tasks_per_child_defaults_to_spawn_context`` and
  ``test_max_tasks_early_shutdown`` (``ProcessPoolExecutor``'s
  ``max_tasks_per_child`` and ``mp_context`` arguments and ``_mp_context``
  attribute; makeparallel's ``max_tasks_per_worker`` has tests of its own),
  ``test_python_finalization_error`` (makes the threads
  ``ProcessPoolExecutor`` starts fail, through
  ``threading._start_joinable_thread``), ``test_max_workers_too_large``
  (``ProcessPoolExecutor``'s limit on Windows).
- ``test_thread_pool``: ``test_default_workers`` (``ThreadPoolExecutor``'s
  default size, read from ``_max_workers``; a Pool's default is the usable
  CPUs), ``test_saturation`` and ``test_idle_thread_reuse`` (count
  ``executor._threads``), ``test_hang_global_shutdown_lock`` (runs
  ``ThreadPoolExecutor`` and ``ProcessPoolExecutor``, not the executor under
  test).
- ``test_shutdown``: ``test_threads_terminate`` and ``test_processes_terminate``
  (count and join ``executor._threads`` / ``executor._processes``);
  ``test_context_manager_shutdown``, ``test_del_shutdown`` and
  ``test_shutdown_no_wait`` (build ``ThreadPoolExecutor`` /
  ``ProcessPoolExecutor`` themselves and join their ``_threads``,
  ``_processes``, ``_call_queue`` and ``_executor_manager_thread``);
  ``test_thread_names_assigned`` and ``test_thread_names_default``
  (``ThreadPoolExecutor``'s ``thread_name_prefix`` and thread names).
- ``test_init``: ``FailingInitializerResourcesTest`` (checks
  ``multiprocessing``'s resource tracker after ``ProcessPoolExecutor`` has
  run; makeparallel does not use it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import traceback
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, ClassVar
from unittest import mock

import pytest
from test.support.script_helper import assert_python_ok

import makeparallel as mp
from cpython_tests import (
    test_as_completed,
    test_future,
    test_init,
    test_process_pool,
    test_shutdown,
    test_thread_pool,
    test_wait,
    util,
)

# The longest of these tests takes about 6 s: a deadlock fails in 20, not in
# the suite's 120.
pytestmark = pytest.mark.timeout(20)


# -- the pools under test -----------------------------------------------------


class _PoolMixin(util.ExecutorMixin):
    """``executor_type`` makes a ``mp.Pool`` with these ``pool_options``."""

    pool_options: ClassVar[dict[str, str]]
    executor_type: Callable[..., mp.Pool]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "pool_options" in cls.__dict__:
            cls.executor_type = staticmethod(functools.partial(mp.Pool, **cls.pool_options))


class ThreadEngineMixin(_PoolMixin):
    pool_options: ClassVar[dict[str, str]] = {"backend": "thread"}


class _ProcessEngineMixin(_PoolMixin):
    def get_context(self) -> Any:
        """The multiprocessing context of the same start method (tests make a Manager with it)."""
        return multiprocessing.get_context(self.pool_options["start"])


class SpawnEngineMixin(_ProcessEngineMixin):
    pool_options: ClassVar[dict[str, str]] = {"backend": "process", "start": "spawn"}


class ForkEngineMixin(_ProcessEngineMixin):
    pool_options: ClassVar[dict[str, str]] = {"backend": "process", "start": "fork"}


# -- tests that run a script with the pool under test -------------------------

_SLEEP_AND_PRINT = """
import sys
import time
from makeparallel import Pool

def sleep_and_print(t, msg):
    time.sleep(t)
    print(msg)
    sys.stdout.flush()
"""


class _PoolScripts:
    """``test_shutdown``'s script tests, with the pool made by ``makeparallel.Pool``."""

    pool_options: ClassVar[dict[str, str]]

    def _script(self, body: str) -> str:
        return f"{_SLEEP_AND_PRINT}\noptions = {self.pool_options!r}\n{body}"

    def test_interpreter_shutdown(self) -> None:
        _, out, err = assert_python_ok(
            "-c",
            self._script(
                """
if __name__ == "__main__":
    t = Pool(5, **options)
    t.submit(sleep_and_print, 1.0, "apple")
"""
            ),
        )
        assert not err
        assert out.strip() == b"apple"

    def test_submit_after_interpreter_shutdown(self) -> None:
        _, out, err = assert_python_ok(
            "-c",
            """
import atexit
@atexit.register
def run_last():
    try:
        t.submit(id, None)
    except RuntimeError:
        print("runtime-error")
        raise
"""
            + self._script(
                """
if __name__ == "__main__":
    t = Pool(5, **options)
    if options["backend"] == "process":
        t.submit(id, 42).result()
"""
            ),
        )
        assert "RuntimeError: cannot schedule new futures" in err.decode()
        assert out.strip() == b"runtime-error"

    def test_hang_gh83386(self) -> None:
        _, out, err = assert_python_ok(
            "-c",
            self._script(
                """
if __name__ == "__main__":
    t = Pool(max_workers=3, **options)
    t.submit(sleep_and_print, 1.0, "apple")
    t.shutdown(wait=False)
"""
            ),
        )
        assert not err
        assert out.strip() == b"apple"

    def test_cancel_futures_wait_false(self) -> None:
        _, out, err = assert_python_ok(
            "-c",
            self._script(
                """
if __name__ == "__main__":
    t = Pool(**options)
    t.submit(sleep_and_print, .1, "apple")
    t.shutdown(wait=False, cancel_futures=True)
"""
            ),
        )
        assert not err
        assert out.strip() in (b"apple", b"")


class _LoggedByMakeparallel:
    """``FailingInitializerMixin``'s log check, on the logger and level makeparallel
    logs a failed initializer with (``ThreadPoolExecutor``: ``concurrent.futures``, CRITICAL)."""

    @contextlib.contextmanager
    def _assert_logged(self, msg: str) -> Iterator[None]:
        with self.assertLogs("makeparallel", "ERROR") as logged:
            yield
        assert any(msg in line for line in logged.output), logged.output


class _ManagerObjectsFreed:
    """When ``test_ressources_gced_in_workers`` fails, the Manager it made and the
    object it passed die with the failure, not in a later test: the object's
    ``__del__`` calls the Manager, and would fail whichever test collects it."""

    def test_ressources_gced_in_workers(self) -> None:
        try:
            super().test_ressources_gced_in_workers()
        except BaseException as error:
            traceback.clear_frames(error.__traceback__)
            raise


# -- which vendored tests apply (the module docstring says why the others do not) --
# Plain classes, put first among a test class's bases: a test set to None here
# is not collected.


class _NotOnThreads:
    test_default_workers = None
    test_saturation = None
    test_idle_thread_reuse = None
    test_hang_global_shutdown_lock = None
    test_threads_terminate = None
    test_context_manager_shutdown = None
    test_del_shutdown = None
    test_shutdown_no_wait = None
    test_thread_names_assigned = None
    test_thread_names_default = None


class _NotOnProcesses:
    test_max_workers_too_large = None
    test_killed_child = None
    test_traceback = None
    test_saturation = None
    test_idle_process_reuse_one = None
    test_idle_process_reuse_multiple = None
    test_max_tasks_per_child = None
    test_max_tasks_per_child_defaults_to_spawn_context = None
    test_max_tasks_early_shutdown = None
    test_python_finalization_error = None
    test_processes_terminate = None
    test_context_manager_shutdown = None
    test_del_shutdown = None
    test_shutdown_no_wait = None


# -- the thread engine ----------------------------------------------------------


class ThreadExecutorTest(_NotOnThreads, ThreadEngineMixin, test_thread_pool.ThreadPoolExecutorTest):
    pass


class ThreadWaitTest(ThreadEngineMixin, test_wait.ThreadPoolWaitTests):
    pass


class ThreadAsCompletedTest(
    test_as_completed.AsCompletedTests, ThreadEngineMixin, util.BaseTestCase
):
    pass


class ThreadShutdownTest(
    _NotOnThreads, _PoolScripts, ThreadEngineMixin, test_shutdown.ThreadPoolShutdownTest
):
    pass


class ThreadInitializerTest(test_init.InitializerMixin, ThreadEngineMixin, util.BaseTestCase):
    pass


class ThreadFailingInitializerTest(
    _LoggedByMakeparallel, test_init.FailingInitializerMixin, ThreadEngineMixin, util.BaseTestCase
):
    pass


# -- the process engine, workers started as fresh interpreters -------------------


class SpawnExecutorTest(
    _NotOnProcesses,
    _ManagerObjectsFreed,
    test_process_pool.ProcessPoolExecutorTest,
    SpawnEngineMixin,
    util.BaseTestCase,
):
    pass


class SpawnWaitTest(test_wait.WaitTests, SpawnEngineMixin, util.BaseTestCase):
    pass


class SpawnAsCompletedTest(test_as_completed.AsCompletedTests, SpawnEngineMixin, util.BaseTestCase):
    pass


class SpawnShutdownTest(
    _NotOnProcesses,
    _PoolScripts,
    test_shutdown.ProcessPoolShutdownTest,
    SpawnEngineMixin,
    util.BaseTestCase,
):
    pass


class SpawnInitializerTest(test_init.InitializerMixin, SpawnEngineMixin, util.BaseTestCase):
    pass


class SpawnFailingInitializerTest(
    _LoggedByMakeparallel, test_init.FailingInitializerMixin, SpawnEngineMixin, util.BaseTestCase
):
    pass


# -- the process engine, workers forked ------------------------------------------


class ForkExecutorTest(
    _NotOnProcesses,
    _ManagerObjectsFreed,
    test_process_pool.ProcessPoolExecutorTest,
    ForkEngineMixin,
    util.BaseTestCase,
):
    pass


class ForkWaitTest(test_wait.WaitTests, ForkEngineMixin, util.BaseTestCase):
    pass


class ForkAsCompletedTest(test_as_completed.AsCompletedTests, ForkEngineMixin, util.BaseTestCase):
    pass


class ForkShutdownTest(
    _NotOnProcesses,
    _PoolScripts,
    test_shutdown.ProcessPoolShutdownTest,
    ForkEngineMixin,
    util.BaseTestCase,
):
    pass


class ForkInitializerTest(test_init.InitializerMixin, ForkEngineMixin, util.BaseTestCase):
    pass


class ForkFailingInitializerTest(
    _LoggedByMakeparallel, test_init.FailingInitializerMixin, ForkEngineMixin, util.BaseTestCase
):
    pass


# -- Handle as the Future --------------------------------------------------------

_FUTURE_IN_REPR = "<Future at"
_HANDLE_IN_REPR = f"<{mp.Handle.__name__} at"


class HandleFutureTest(test_future.FutureTests):
    """``test_future.FutureTests`` with every ``Future`` they build a ``mp.Handle``."""

    def setUp(self) -> None:
        super().setUp()
        # As without pytest's log capture: a failing done-callback's record
        # reaches stderr through logging's last-resort handler.
        futures_logger = logging.getLogger("concurrent.futures")
        futures_logger.addHandler(logging.lastResort)
        self.addCleanup(futures_logger.removeHandler, logging.lastResort)
        for module in (util, test_future):
            self._replace(module, "Future", mp.Handle)
        states = {
            "PENDING_FUTURE": {"state": util.PENDING},
            "RUNNING_FUTURE": {"state": util.RUNNING},
            "CANCELLED_FUTURE": {"state": util.CANCELLED},
            "CANCELLED_AND_NOTIFIED_FUTURE": {"state": util.CANCELLED_AND_NOTIFIED},
            "EXCEPTION_FUTURE": {"state": util.FINISHED, "exception": OSError()},
            "SUCCESSFUL_FUTURE": {"state": util.FINISHED, "result": 42},
        }
        for name, arguments in states.items():
            self._replace(test_future, name, util.create_future(**arguments))

    def _replace(self, module: ModuleType, name: str, value: object) -> None:
        patcher = mock.patch.object(module, name, value)
        patcher.start()
        self.addCleanup(patcher.stop)

    def assertRegex(self, text: Any, expected_regex: Any, msg: Any = None) -> None:
        pattern = expected_regex.replace(_FUTURE_IN_REPR, _HANDLE_IN_REPR)
        super().assertRegex(text, pattern, msg)  # noqa: PT009

    def assertRaisesRegex(
        self, expected_exception: Any, expected_regex: Any, *args: Any, **kwargs: Any
    ) -> Any:
        pattern = expected_regex.replace(_FUTURE_IN_REPR, _HANDLE_IN_REPR)
        return super().assertRaisesRegex(expected_exception, pattern, *args, **kwargs)  # noqa: PT027
