"""A function is sent to each worker once; later tasks name it by a key.

What a user can notice: every task still runs the function it was given -
however many functions a worker has seen, whatever was cancelled on its
way - and a function too large to send often is named in a warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import makeparallel as mp
from polling import wait_for_file, wait_until
from programs import run_program, write_program

DEADLINE = 30.0


def block_then_return(path: str, value: int) -> int:
    wait_for_file(path)
    return value


def noop() -> None:
    return None


def test_a_worker_that_saw_more_functions_than_it_keeps_runs_each_right() -> None:
    # 600 functions through one worker, each used twice: the worker keeps 256 and drops
    # the least recently used, as the pool's copy of its list does.
    makers = [lambda i=i: lambda x: x * 1000 + i for i in range(600)]
    functions = [make() for make in makers]
    with mp.Pool(workers=1, backend="process") as pool:
        order = list(range(600)) + list(range(599, -1, -7)) + list(range(0, 600, 3))
        handles = [(i, pool.submit(functions[i], 5)) for i in order]
        assert [h.result(timeout=DEADLINE) for _, h in handles] == [5000 + i for i, _ in handles]


def test_a_function_whose_first_copy_was_cancelled_on_its_way_still_runs(tmp_path: Path) -> None:
    with mp.Pool(workers=1, backend="process") as pool:
        for handle in [pool.submit(noop) for _ in range(200)]:
            handle.result(timeout=DEADLINE)  # quick tasks: later ones are sent ahead
        gate, hold_gate = str(tmp_path / "gate"), str(tmp_path / "hold")
        blocked = pool.submit(block_then_return, gate, 0)
        wait_until(blocked.running, what="the blocked task to start")
        triple = lambda x: 3 * x  # noqa: E731  (new to the worker: its first task carries it)
        hold = pool.submit(block_then_return, hold_gate, 0)
        first, second = pool.submit(triple, 1), pool.submit(triple, 2)
        Path(gate).touch()  # its answer sends the three in one write: two wait behind hold
        wait_until(lambda: pool.workers_info()[0]["queued"] == 2, what="two tasks queued")
        assert first.cancel()  # the worker skips the task that carried the function
        Path(hold_gate).touch()
        assert hold.result(timeout=DEADLINE) == 0
        assert second.result(timeout=DEADLINE) == 6  # ... and still has it for this one
        assert first.cancelled()


def test_a_large_function_is_named_in_a_warning_and_sent_by_name_to_forked_workers(
    tmp_path: Path,
) -> None:
    script = tmp_path / "large.py"
    write_program(
        script,
        """
        import json, logging, sys
        import makeparallel as mp

        TABLE = {i: 2 * i for i in range(300_000)}

        def look(i):
            return TABLE[i]

        if __name__ == "__main__":
            records = []
            logging.getLogger("makeparallel").addHandler(logging.Handler())
            logging.getLogger("makeparallel").handlers[-1].emit = records.append
            with mp.Pool(workers=2, start=sys.argv[1]) as pool:
                values = [pool.submit(look, i).result() for i in range(10)]
            TABLE[0] = "changed after the pool started"
            print(json.dumps({"values": values, "warned": [r.getMessage() for r in records]}))
        """,
    )
    forked = json.loads(run_program(script, args=("fork",)).stdout)
    fresh = json.loads(run_program(script, args=("spawn",)).stdout)
    assert forked["values"] == fresh["values"] == [2 * i for i in range(10)]
    assert forked["warned"] == []  # the forked workers' __main__ has it: sent by name
    assert len(fresh["warned"]) == 1  # pickled once, with its table, and named
    assert "__main__.look pickles to" in fresh["warned"][0]


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_main_function_sees_its_globals_as_when_first_sent(tmp_path: Path, start: str) -> None:
    script = tmp_path / "snapshot.py"
    write_program(
        script,
        """
        import json, sys
        import makeparallel as mp

        SETTING = "as the program began"

        def read():
            return SETTING

        if __name__ == "__main__":
            with mp.Pool(workers=1, start=sys.argv[1]) as pool:
                first = pool.submit(read).result()
                SETTING = "changed later"
                later = pool.submit(read).result()
            print(json.dumps([first, later]))
        """,
    )
    first, later = json.loads(run_program(script, args=(start,)).stdout)
    assert first == later == "as the program began"


def test_every_worker_imports_a_tasks_module_when_the_first_task_comes(tmp_path: Path) -> None:
    def imported_it(gate: str) -> tuple[int, bool]:  # (local: it travels by value)
        import os
        import sys
        import time

        while not os.path.exists(gate):
            time.sleep(0.005)
        return os.getpid(), "preloaded_module" in sys.modules

    from preloaded_module import square

    gate = str(tmp_path / "gate")
    with mp.Pool(workers=2, backend="process", start="spawn") as pool:
        wait_until(lambda: len(pool.workers_info()) == 2, what="two workers")
        assert pool.submit(square, 3).result(timeout=DEADLINE) == 9  # one worker ran it ...
        both = [pool.submit(imported_it, gate) for _ in range(2)]
        wait_until(lambda: all(h.running() for h in both), what="a task on each worker")
        Path(gate).touch()
        answers = [h.result(timeout=DEADLINE) for h in both]
    assert len({pid for pid, _ in answers}) == 2
    assert all(had for _, had in answers)  # ... and both had imported its module
