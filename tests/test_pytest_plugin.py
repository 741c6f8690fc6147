"""The pytest plugin, run the way a user's test suite runs it: in a fresh pytest process."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

TASKS = """
import os
import threading

import makeparallel as mp


def where():
    return os.getpid(), threading.get_ident()


def echo(x):
    return x
"""


@pytest.fixture
def tasks(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(helpers=TASKS)
    return pytester


def test_the_plugin_adds_its_option_and_marker(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--mp-backend={serial,thread,process}*"])
    markers = pytester.runpytest_subprocess("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.makeparallel(backend=None, check_pickle=True)*"])


def test_importing_the_plugin_starts_nothing_and_stays_light() -> None:
    code = (
        "import sys, threading, os\n"
        "import makeparallel.testing.plugin\n"
        "heavy = [m for m in ('makeparallel.pool', 'makeparallel.api', 'makeparallel._tasks',"
        " 'makeparallel.testing._modes', 'cloudpickle') if m in sys.modules]\n"
        "children = open(f'/proc/self/task/{os.getpid()}/children').read().split()\n"
        "print(threading.active_count(), heavy, children)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "1 [] []"


def test_mp_serial_runs_tasks_here_and_checks_pickling(tasks: pytest.Pytester) -> None:
    tasks.makepyfile(
        """
        import os, threading
        import pytest
        import makeparallel as mp
        from helpers import echo, where

        def test_inline(mp_serial):
            assert mp.parallel(where)().result() == (os.getpid(), threading.get_ident())

        def test_a_lock_cannot_travel(mp_serial):
            with pytest.raises(mp.SerializationError):
                mp.parallel(echo)(threading.Lock()).result()
        """
    )
    tasks.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


SEES_BACKEND = """
import os, threading
import makeparallel as mp
from helpers import where

def test_where_tasks_run():
    pid, thread = mp.parallel(where)().result(timeout=60)
    print("ran:", "here" if (pid, thread) == (os.getpid(), threading.get_ident())
          else "thread" if pid == os.getpid() else "process")
"""


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (["--mp-backend=serial"], None, "here"),
        (["--mp-backend=thread"], None, "thread"),
        (["--mp-backend=process"], None, "process"),
        ([], "serial", "here"),
        (["--mp-backend=thread"], "serial", "thread"),  # the command line wins
        ([], None, "process"),
    ],
)
def test_the_backend_option_and_ini_key_choose_where_tasks_run(
    tasks: pytest.Pytester, args: list[str], ini: str | None, expected: str
) -> None:
    if ini is not None:
        tasks.makeini(f"[pytest]\nmp_backend = {ini}\n")
    tasks.makepyfile(SEES_BACKEND)
    result = tasks.runpytest_subprocess("-s", "-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*ran: {expected}*"])


def test_a_bad_ini_value_is_a_usage_error(tasks: pytest.Pytester) -> None:
    tasks.makeini("[pytest]\nmp_backend = gpu\n")
    tasks.makepyfile(SEES_BACKEND)
    result = tasks.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*mp_backend = 'gpu'*use one of serial, thread, process*"])


def test_the_marker_sets_one_tests_engine_and_pickle_check(tasks: pytest.Pytester) -> None:
    tasks.makepyfile(
        """
        import os, threading
        import pytest
        import makeparallel as mp
        from helpers import echo, where

        @pytest.mark.makeparallel(backend="serial", check_pickle=False)
        def test_marked():
            lock = threading.Lock()
            assert mp.parallel(echo)(lock).result() is lock

        @pytest.mark.makeparallel(backend="thread")
        def test_threads():
            pid, thread = mp.parallel(where)().result(timeout=60)
            assert pid == os.getpid() and thread != threading.get_ident()

        def test_unmarked_runs_in_a_worker_process():
            assert mp.parallel(where)().result(timeout=60)[0] != os.getpid()

        @pytest.mark.makeparallel(engine="serial")
        def test_misspelled():
            pass
        """
    )
    result = tasks.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*unknown argument(s)*engine*it takes backend=*"])


def test_configure_is_put_back_after_each_test(tasks: pytest.Pytester) -> None:
    tasks.makepyfile(
        """
        import os
        import makeparallel as mp
        from helpers import where

        def test_changes_it():
            mp.configure(workers=1, backend="thread")
            assert mp.parallel(where)().result(timeout=60)[0] == os.getpid()

        def test_sees_the_default_again():
            assert mp.parallel(where)().result(timeout=60)[0] != os.getpid()
        """
    )
    tasks.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_mp_pool_is_a_real_two_worker_pool_shut_down_after_the_test(
    tasks: pytest.Pytester,
) -> None:
    tasks.makepyfile(
        """
        import os
        import pytest
        from helpers import where

        kept = []

        def test_uses_it(mp_pool):
            kept.append(mp_pool)
            assert mp_pool.workers == 2
            pids = {mp_pool.submit(where).result(timeout=60)[0] for _ in range(4)}
            assert os.getpid() not in pids

        def test_it_was_shut_down():
            with pytest.raises(RuntimeError, match="shut down"):
                kept[0].submit(where)
        """
    )
    tasks.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_mp_no_leaks_fails_a_test_that_leaves_workers(tasks: pytest.Pytester) -> None:
    tasks.makepyfile(
        """
        import makeparallel as mp
        from helpers import where

        left = []

        def test_leaves_a_pool(mp_no_leaks):
            pool = mp.Pool(workers=1, backend="process", start="spawn")
            pool.submit(where).result(timeout=60)
            left.append(pool)

        def test_leaves_a_thread_pool(mp_no_leaks):
            pool = mp.Pool(workers=1, backend="thread", name="forgotten")
            pool.submit(where).result(timeout=60)
            left.append(pool)

        def test_closes_its_pool(mp_no_leaks):
            with mp.Pool(workers=1, backend="process", start="spawn") as pool:
                pool.submit(where).result(timeout=60)

        def test_cleanup():
            for pool in left:
                pool.shutdown(wait=True)
        """
    )
    result = tasks.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_leaves_a_pool*",
            "*the test left worker process(es)*Shut down every pool*",
            "*test_leaves_a_thread_pool*",
            "*the test left thread(s)*forgotten-worker-*",
        ]
    )


def test_mp_events_records_the_tests_task_events(tasks: pytest.Pytester) -> None:
    tasks.makepyfile(
        """
        import makeparallel as mp
        from helpers import echo

        def test_events(mp_events, mp_serial):
            assert mp.parallel(echo)(1).result() == 1
            assert mp_events.kinds() == ["submitted", "started", "finished"]
            assert mp_events.of("finished")[0].outcome == "succeeded"
        """
    )
    tasks.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_deterministic_failure_repeats_with_its_seed(tasks: pytest.Pytester) -> None:
    tasks.makepyfile(
        """
        import pytest
        import makeparallel as mp
        from helpers import echo

        @pytest.mark.parametrize("seed", range(6))
        def test_order(seed):
            finished = []
            with mp.testing.deterministic(seed=seed):
                for i in range(4):
                    mp.parallel(echo)(i).add_done_callback(lambda h: finished.append(h.result()))
            print(f"seed {seed}: {finished}")
            assert finished == [0, 1, 2, 3]  # code that wrongly assumes submission order
        """
    )
    first = tasks.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    second = tasks.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    outcomes = first.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1
    assert second.parseoutcomes() == outcomes
    orders = [line for line in first.outlines if line.lstrip(".F").startswith("seed ")]
    assert orders == [line for line in second.outlines if line.lstrip(".F").startswith("seed ")]
