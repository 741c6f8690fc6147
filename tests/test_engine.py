"""Engine choices: CPU sizing, nested parallelism, interpreter-level details."""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import makeparallel as mp
from makeparallel._doctor import WORKER_MODULES, bytecode_is_current
from makeparallel._sizing import cgroup_cpu_quota, usable_cpus
from programs import run_python

DEADLINE = 30.0


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_read(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5


def test_cgroup_v2_without_a_limit(tmp_path: Path) -> None:
    write(tmp_path, "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_cgroup_v1_quota_is_read(tmp_path: Path) -> None:
    write(tmp_path, "cpu.cfs_quota_us", "50000\n")
    write(tmp_path, "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path) == 0.5
    write(tmp_path, "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_usable_cpus_follows_the_affinity_mask() -> None:
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    code = textwrap.dedent(
        """
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        import makeparallel as mp
        from makeparallel._sizing import usable_cpus
        pool = mp.Pool(backend="thread")
        print(usable_cpus(), pool.workers)
        pool.shutdown()
        """
    )
    result = run_python("-c", code)
    assert result.stdout.split() == ["1", "1"]


def test_default_pool_size_is_the_usable_cpus() -> None:
    with mp.Pool(backend="thread") as pool:
        assert pool.workers == usable_cpus()


def test_parallel_inside_a_worker_runs_inline(tmp_path: Path) -> None:
    helper = tmp_path / "tests_nested_helper.py"
    helper.write_text(
        textwrap.dedent(
            """
            import os
            import makeparallel as mp

            @mp.parallel
            def inner_square(x):
                return os.getpid(), x * x
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        with mp.Pool(workers=1, backend="process") as pool:
            pid, _, results = pool.submit(nested_sum_pids, 4).result(timeout=DEADLINE)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tests_nested_helper", None)
    assert pid != os.getpid()
    assert [square for _, square in results] == [0, 1, 4, 9]
    assert {inner_pid for inner_pid, _ in results} == {pid}  # no grand-child processes


def nested_sum_pids(n: int) -> tuple[int, None, list[tuple[int, int]]]:
    """Calls a @parallel function from inside a worker: it must run inline there."""
    from tests_nested_helper import inner_square

    handles = [inner_square(i) for i in range(n)]
    return os.getpid(), None, [h.result(timeout=DEADLINE) for h in handles]


def run_command(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m makeparallel ...`` in a fresh interpreter; it must succeed."""
    return run_python("-m", "makeparallel", *args, timeout=timeout)


def test_doctor_reports_and_passes() -> None:
    result = run_command("doctor")
    assert "usable CPUs" in result.stdout
    assert "bytecode     " in result.stdout
    assert "smoke test   ok" in result.stdout


def test_doctor_checks_the_bytecode_of_every_module_a_worker_imports() -> None:
    imported = run_python(
        "-c",
        "import sys, makeparallel._worker.main; "
        "print(' '.join(m for m in sys.modules if m.startswith('makeparallel')))",
    ).stdout.split()

    assert sorted(imported) == sorted(WORKER_MODULES)


def test_a_fresh_worker_has_imported_only_the_worker_package() -> None:
    # (a lambda travels by value: unpickling it imports no module of the tests; a forked
    # worker has what the parent had, so the pool starts fresh interpreters)
    loaded = lambda: sorted(m for m in __import__("sys").modules if m.startswith("makeparallel"))  # noqa: E731
    with mp.Pool(workers=1, backend="process", start="spawn") as pool:
        assert pool.submit(loaded).result(timeout=30) == sorted(WORKER_MODULES)


@pytest.mark.parametrize(
    "mode",
    [
        py_compile.PycInvalidationMode.TIMESTAMP,
        py_compile.PycInvalidationMode.CHECKED_HASH,
    ],
)
def test_bytecode_goes_out_of_date_with_its_source(
    tmp_path: Path, mode: py_compile.PycInvalidationMode
) -> None:
    source = tmp_path / "module.py"
    source.write_text("x = 1\n")
    assert not bytecode_is_current(source)  # none yet

    py_compile.compile(str(source), invalidation_mode=mode, doraise=True)
    assert bytecode_is_current(source)

    source.write_text("x = 12\n")  # another size, so even the same mtime tells
    assert not bytecode_is_current(source)


def test_unchecked_hash_bytecode_counts_as_current(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text("x = 1\n")
    py_compile.compile(str(source), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    source.write_text("x = 12\n")

    assert bytecode_is_current(source)  # the interpreter loads it without looking


def test_bench_command_runs() -> None:
    result = run_python("-W", "error", "-m", "makeparallel", "bench", "--rounds", "1", timeout=300)
    assert "makeparallel Pool" in result.stdout
    assert "ProcessPoolExecutor" in result.stdout
    assert "round trip" in result.stdout


def test_demo_runs_and_reports_a_speed_up() -> None:
    result = run_command("demo", "--blocks", "4", "--block-size", "2000")
    assert "serial:" in result.stdout
    assert "parallel:" in result.stdout
    assert "speed-up:" in result.stdout
