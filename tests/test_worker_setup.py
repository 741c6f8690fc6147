"""Per-worker set-up (initializer) and recycling (max_tasks_per_worker)."""

from __future__ import annotations

import concurrent.futures
import os
import threading
from pathlib import Path

import pytest

import makeparallel as mp
from polling import wait_until
from programs import run_program, write_program

DEADLINE = 30.0

_state: dict[str, object] = {}


def remember(key: str, value: object) -> None:
    _state[key] = value


def recall(key: str) -> object:
    return _state.get(key)


def explode() -> None:
    raise RuntimeError("no database here")


def pid_and_thread(_: object = None) -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_initializer_runs_before_tasks(backend: str) -> None:
    _state.clear()
    with mp.Pool(
        workers=2, backend=backend, initializer=remember, initargs=("db", "connected")
    ) as pool:
        assert [pool.submit(recall, "db").result(DEADLINE) for _ in range(4)] == ["connected"] * 4


def test_initializer_runs_once_per_worker_process(tmp_path: Path) -> None:
    log = tmp_path / "starts"
    with mp.Pool(workers=2, backend="process", initializer=append_pid, initargs=(str(log),)) as p:
        pids = {p.submit(pid_and_thread).result(DEADLINE)[0] for _ in range(10)}
    started = log.read_text().split()
    assert len(started) == 2
    assert pids <= {int(pid) for pid in started}


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_a_script_initializer_sets_globals_its_tasks_read(tmp_path: Path, start: str) -> None:
    # The common per-worker connection: both functions live in the user's script.
    script = tmp_path / "script.py"
    write_program(
        script,
        f"""
        import makeparallel as mp

        db = None
        scale = 1

        def connect(value):
            global db
            db = value

        def read():
            return db, scale, twice(scale)

        def twice(x):
            return 2 * x

        def count_calls():
            global calls
            calls = globals().get("calls", 0) + 1
            return calls

        if __name__ == "__main__":
            with mp.Pool(1, start={start!r}, initializer=connect, initargs=("conn",)) as pool:
                print(pool.submit(read).result(30))
                scale = 5  # a global the parent changes reaches functions it sends later
                print(pool.submit(lambda: (db, scale)).result(30))
                print([pool.submit(count_calls).result(30) for _ in range(2)])
        """,
    )
    lines = run_program(script).stdout.splitlines()
    assert lines == ["('conn', 1, 2)", "('conn', 5)", "[1, 2]"]


def append_pid(path: str) -> None:
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_a_failing_initializer_fails_the_tasks_instead_of_looping(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = mp.Pool(workers=1, backend=backend, initializer=explode)
    try:
        # Broken as soon as the initializer fails: the first task fails with it, or, if
        # the pool broke first, submit raises it, as an executor's submit does.
        with pytest.raises(concurrent.futures.BrokenExecutor, match="no database here"):
            pool.submit(recall, "db").result(timeout=DEADLINE)
        with pytest.raises(mp.BrokenPoolError, match="no database here"):
            pool.submit(recall, "db")
        assert not pool.health().healthy
    finally:
        pool.shutdown(timeout=5)


def test_a_failing_initializer_on_the_serial_engine_raises_at_once() -> None:
    with pytest.raises(mp.TaskError, match="no database here"):
        mp.Pool(backend="serial", initializer=explode)


def test_an_initializer_that_cannot_be_pickled_is_refused_at_once() -> None:
    lock = threading.Lock()
    with pytest.raises(mp.SerializationError, match="initializer"):
        mp.Pool(workers=1, backend="process", initializer=remember, initargs=("lock", lock))


def test_workers_are_recycled_after_max_tasks() -> None:
    with mp.Pool(workers=1, backend="process", max_tasks_per_worker=2) as pool:
        pids = [pool.submit(pid_and_thread).result(DEADLINE)[0] for _ in range(6)]
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[4] == pids[5]
    assert len({pids[0], pids[2], pids[4]}) == 3


def test_threads_are_recycled_after_max_tasks() -> None:
    with mp.Pool(workers=1, backend="thread", max_tasks_per_worker=3) as pool:
        names = [pool.submit(pid_and_thread).result(DEADLINE)[1] for _ in range(6)]
    assert len(set(names[:3])) == 1
    assert len(set(names[3:])) == 1
    assert names[0] != names[3]


def test_recycling_under_a_map_loses_nothing() -> None:
    with mp.Pool(workers=2, backend="process", max_tasks_per_worker=1) as pool:
        results = list(pool.map(abs, range(-20, 0), chunksize=1))
    assert results == list(range(20, 0, -1))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_tasks_per_worker": 0}, ValueError, "max_tasks_per_worker must be >= 1"),
        ({"max_tasks_per_worker": 2.5}, TypeError, "max_tasks_per_worker"),
        ({"initializer": "setup"}, TypeError, "initializer must be callable"),
        ({"initializer": remember, "initargs": "ab"}, TypeError, "initargs"),
        ({"backend": "serial", "max_tasks_per_worker": 2}, ValueError, "serial engine"),
    ],
)
def test_bad_worker_setup_is_refused(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        mp.Pool(workers=1, **kwargs)  # type: ignore[arg-type]


def test_executor_backends_refuse_worker_setup() -> None:
    import concurrent.futures

    with (
        concurrent.futures.ThreadPoolExecutor(1) as executor,
        pytest.raises(ValueError, match="configure the executor"),
    ):
        mp.Pool(backend=executor, max_tasks_per_worker=3)


def _proc_text(pid: int, field: str) -> str:
    with open(f"/proc/{pid}/{field}", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


@pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="needs Linux /proc")
def test_worker_processes_are_named_after_the_pool() -> None:
    with mp.Pool(workers=2, backend="process", name="etl") as pool:
        pid = pool.submit(pid_and_thread).result(DEADLINE)[0]
        assert _proc_text(pid, "comm").startswith("etl-worker-")
        # the full name follows once the worker is idle
        wait_until(
            lambda: "makeparallel: etl-worker-" in _proc_text(pid, "cmdline"),
            what="the worker's full name",
        )


@pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="needs Linux /proc")
def test_without_setproctitle_the_process_name_is_set(tmp_path: Path) -> None:
    stub = tmp_path / "setproctitle"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('not installed here')\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        with mp.Pool(workers=1, backend="process", name="etl") as pool:
            pid = pool.submit(pid_and_thread).result(DEADLINE)[0]
            assert _proc_text(pid, "comm").strip() == "etl-worker-0"
    finally:
        sys.path.remove(str(tmp_path))


def test_threads_are_named_after_the_pool() -> None:
    with mp.Pool(workers=2, backend="thread", name="io") as pool:
        handle = pool.submit(pid_and_thread)
        assert handle.result(DEADLINE)[1].startswith("io-worker-")
        assert handle.worker is not None
        assert handle.worker.startswith("io-worker-")
