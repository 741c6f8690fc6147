"""mp.profile(): where the tasks of a block spent their time, and the advice it gives.

The workloads are chosen so the answer cannot be in doubt: thousands of
calls that do nothing (shipping each one costs far more than running it),
and tasks that run 50 ms each (far more than shipping costs).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import makeparallel as mp

DEADLINE = 60.0
BATCHING = "use parallel_map, which batches them"


def nothing(x: int) -> int:
    return x


def fifty_ms(x: int) -> int:
    time.sleep(0.05)  # the workload: a task that takes 50 ms
    return x


def fail(x: int) -> int:
    raise ValueError(x)


def name_of(fn: object) -> str:
    return f"{__name__}.{fn.__qualname__}"  # type: ignore[attr-defined]


def test_thousands_of_tiny_tasks_are_told_to_batch(process_pool: mp.Pool) -> None:
    process_pool.submit(nothing, 0).result(timeout=DEADLINE)  # workers started
    with mp.profile() as report:
        handles = [process_pool.submit(nothing, i) for i in range(3000)]
        assert mp.gather(handles, timeout=DEADLINE) == list(range(3000))

    assert any(BATCHING in line for line in report.advice)
    assert BATCHING in str(report)
    row = report.functions[name_of(nothing)]
    assert row.running < row.shipping
    assert report.efficiency < 0.5


def test_fifty_ms_tasks_spend_their_time_running(process_pool: mp.Pool) -> None:
    process_pool.submit(nothing, 0).result(timeout=DEADLINE)
    with mp.profile() as report:
        handles = [process_pool.submit(fifty_ms, i) for i in range(12)]
        mp.gather(handles, timeout=DEADLINE)

    row = report.functions[name_of(fifty_ms)]
    assert row.running_share > 0.5
    assert row.running >= 12 * 0.05 * 0.9  # what the worker measured, not the block's time
    assert not any("ship" in line for line in report.advice)
    assert "running" in str(report)


def test_counts_are_the_tasks_that_ran(process_pool: mp.Pool) -> None:
    process_pool.submit(nothing, 0).result(timeout=DEADLINE)
    with mp.profile() as report:
        mp.gather([process_pool.submit(nothing, i) for i in range(40)], timeout=DEADLINE)
        handles = [process_pool.submit(fail, i) for i in range(5)]
        for i, handle in enumerate(handles):
            with pytest.raises(ValueError, match=str(i)):
                handle.result(timeout=DEADLINE)
        # an explicit chunksize: 10 chunks of 10 items, each a task of 10 calls
        assert list(process_pool.map(nothing, range(100), chunksize=10)) == list(range(100))

    functions = report.functions
    assert functions[name_of(fail)].tasks == 5
    assert functions[name_of(nothing)].tasks == 40 + 10
    assert functions[name_of(nothing)].calls == 40 + 100
    assert report.tasks == 55
    data = report.to_dict()
    assert data["functions"][name_of(fail)]["tasks"] == 5
    assert set(data) >= {"wall", "cores", "efficiency", "functions", "advice"}


def test_only_the_block_is_counted(process_pool: mp.Pool) -> None:
    before = process_pool.submit(nothing, 0)
    before.result(timeout=DEADLINE)
    with mp.profile() as report:
        process_pool.submit(nothing, 1).result(timeout=DEADLINE)
    process_pool.submit(nothing, 2).result(timeout=DEADLINE)  # after: not counted
    assert report.tasks == 1
    assert report.functions[name_of(nothing)].tasks == 1


def test_thread_pools_are_profiled_too(thread_pool: mp.Pool) -> None:
    with mp.profile() as report:
        mp.gather([thread_pool.submit(nothing, i) for i in range(20)], timeout=DEADLINE)
    row = report.functions[name_of(nothing)]
    assert row.tasks == 20
    assert row.transit == 0.0  # nothing travels between processes


def test_an_empty_block_says_so() -> None:
    with mp.profile() as report:
        pass
    assert report.tasks == 0
    assert "no makeparallel tasks" in str(report)
    assert report.advice == []


SCRIPT = """
    import sys
    import makeparallel as mp


    def square(x):
        return x * x


    if __name__ == "__main__":
        n = int(sys.argv[1])
        with mp.Pool(2, backend="process") as pool:
            print("total", sum(mp.gather([pool.submit(square, i) for i in range(n)])))
"""


def test_the_command_line_prints_a_report_for_a_script(tmp_path: Path) -> None:
    script = tmp_path / "work.py"
    script.write_text(textwrap.dedent(SCRIPT))
    src = Path(mp.__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "makeparallel", "profile", str(script), "200"],
        capture_output=True,
        check=False,
        text=True,
        timeout=DEADLINE,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"total {sum(i * i for i in range(200))}"
    assert "makeparallel profile:" in done.stderr
    assert "__main__.square" in done.stderr
    assert " 200 " in done.stderr  # its task count
    assert BATCHING in done.stderr
