"""A pool its program no longer holds: its work is finished, then its workers go.

A function that makes a pool on each call and never shuts it down must not
pile up processes and threads; work it submitted and forgot must still run.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import makeparallel as mp
from polling import DEADLINE, alive, wait_until
from processes import worker_pids


def square(x: int) -> int:
    return x * x


def append_line(path: str, line: str) -> None:
    with open(path, "a") as out:
        out.write(line + "\n")


def threads_named(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def after_collecting(condition: Callable[[], object]) -> Callable[[], bool]:
    """``condition``, checked after a garbage collection (pools are in reference cycles)."""

    def check() -> bool:
        gc.collect()
        return bool(condition())

    return check


def use_a_pool_and_drop_it(backend: str, name: str) -> list[int]:
    pool = mp.Pool(workers=2, backend=backend, name=name)
    assert pool.submit(square, 4).result(timeout=DEADLINE) == 16
    return worker_pids(pool)


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_a_dropped_pool_lets_its_workers_and_threads_go(backend: str) -> None:
    name = f"dropped-{backend}"
    pids = use_a_pool_and_drop_it(backend, name)
    assert threads_named(name)  # its threads outlive the call, until it is collected

    def released() -> bool:
        return not threads_named(name) and not any(alive(pid) for pid in pids)

    wait_until(after_collecting(released), what="the dropped pool's workers and threads to go")


def test_work_submitted_to_a_dropped_pool_still_runs(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"

    def fire_and_forget() -> None:
        pool = mp.Pool(workers=1, backend="process", name="forgotten")
        for i in range(20):
            pool.submit(append_line, str(out), str(i))

    fire_and_forget()
    gc.collect()  # nothing outside the pool holds it or its handles now

    def all_written() -> bool:
        return out.exists() and len(out.read_text().split()) == 20

    wait_until(after_collecting(all_written), what="the 20 forgotten tasks to run")
    assert sorted(map(int, out.read_text().split())) == list(range(20))
    wait_until(
        after_collecting(lambda: not threads_named("forgotten")), what="the pool's threads to go"
    )


def test_a_pool_whose_handle_is_held_is_not_collected() -> None:
    def submit_and_drop_the_pool() -> mp.Handle[int]:
        pool = mp.Pool(workers=1, backend="process", name="held")
        return pool.submit(square, 9)

    handle = submit_and_drop_the_pool()
    gc.collect()
    assert handle.result(timeout=DEADLINE) == 81
    assert threads_named("held")  # the handle keeps its pool, which keeps its workers
    del handle
    wait_until(
        after_collecting(lambda: not threads_named("held")), what="the pool to go with its handle"
    )
