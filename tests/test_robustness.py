"""The process engine under crashes, kills, Ctrl-C and a dead parent."""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import makeparallel as mp
from fakes import FakeSink
from makeparallel._task import Task
from makeparallel.backends.base import WorkerSetup
from makeparallel.backends.process import ProcessBackend
from polling import alive, stderr_after_exit, wait_for_file, wait_until
from processes import worker_pids, workers_in
from programs import run_program, write_program

DEADLINE = 30.0


def block_then_return(path: str, value: int) -> int:
    wait_for_file(path)
    return value


def die_by_signal(signum: int) -> None:
    os.kill(os.getpid(), signum)


def exit_hard(code: int) -> None:
    os._exit(code)


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def start_processes_then_hang(path: str) -> None:
    """Start a shell that starts a process of its own; write both pids to ``path``; hang."""
    shell = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, text=True
    )
    assert shell.stdout is not None
    grandchild = shell.stdout.readline().strip()
    Path(path + ".tmp").write_text(f"{shell.pid} {grandchild}")
    os.replace(path + ".tmp", path)
    time.sleep(300)


def started_pids(path: Path) -> list[int]:
    wait_until(path.exists, what="the task to start its processes")
    pids = [int(pid) for pid in path.read_text().split()]
    assert len(pids) == 2
    assert all(alive(pid) for pid in pids)
    return pids


def square(x: int) -> int:
    return x * x


def slow_square(x: int) -> int:
    total = 0
    for i in range(20_000):
        total += i % 7
    return x * x + total * 0


@pytest.fixture
def pool():
    with mp.Pool(workers=2, backend="process", name="robust") as p:
        yield p


def test_killed_worker_fails_only_its_task_and_is_replaced(pool: mp.Pool, tmp_path: Path) -> None:
    wait_until(lambda: workers_in(pool, "idle") == 2, what="both workers to start")
    release = str(tmp_path / "go")
    blocked = pool.submit(block_then_return, release, 7)
    wait_until(blocked.running, what="the blocked task to start")
    before = set(worker_pids(pool))
    victim = pool.submit(die_by_signal, signal.SIGKILL)
    with pytest.raises(mp.WorkerCrashedError) as info:
        victim.result(timeout=DEADLINE)
    error = info.value
    assert error.signal_name == "SIGKILL"
    assert error.exitcode == -signal.SIGKILL
    assert error.task_id == victim.task_id
    assert error.worker_pid in before
    assert f"pid {error.worker_pid}" in str(error)
    assert "SIGKILL" in str(error)
    assert victim.state == "failed"
    # the other task carries on, and the pool is whole again
    Path(release).touch()
    assert blocked.result(timeout=DEADLINE) == 7
    wait_until(lambda: len(worker_pids(pool)) == 2, what="a replacement worker")
    assert error.worker_pid not in worker_pids(pool)
    assert [h.result(timeout=DEADLINE) for h in [pool.submit(square, i) for i in range(10)]] == [
        i * i for i in range(10)
    ]


def test_worker_killed_from_outside_mid_task(pool: mp.Pool, tmp_path: Path) -> None:
    wait_until(lambda: workers_in(pool, "idle") == 2, what="both workers to start")
    release = str(tmp_path / "never")
    handle = pool.submit(block_then_return, release, 1)
    wait_until(handle.running, what="the task to start")
    pid = handle.worker
    assert pid is not None
    os.kill(int(pid.split()[1]), signal.SIGKILL)
    with pytest.raises(mp.WorkerCrashedError, match="SIGKILL"):
        handle.result(timeout=DEADLINE)
    assert pool.submit(square, 3).result(timeout=DEADLINE) == 9


@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [
        (exit_hard, (3,), "exited with code 3"),
        (segfault, (), "SIGSEGV"),
        (die_by_signal, (signal.SIGTERM,), "SIGTERM"),
    ],
)
def test_crash_reports_how_the_worker_died(pool: mp.Pool, fn, args, expected: str) -> None:
    handle = pool.submit(fn, *args)
    with pytest.raises(mp.WorkerCrashedError, match=expected):
        handle.result(timeout=DEADLINE)
    assert pool.submit(square, 4).result(timeout=DEADLINE) == 16


def test_every_task_ends_once_while_workers_are_killed_at_random() -> None:
    rng = random.Random(1234)
    kills = 25
    with mp.Pool(workers=2, backend="process") as pool:
        handles = [pool.submit(slow_square, i) for i in range(400)]
        for _ in range(kills):
            # kill a worker that is running a task, at a random moment
            wait_until(
                lambda: any(h.running() for h in handles) or all(h.done() for h in handles),
                what="a running task",
            )
            running = [h for h in handles if h.running() and h.worker]
            if not running:
                break
            victim = rng.choice(running).worker
            assert victim is not None
            try:
                os.kill(int(victim.split()[1]), signal.SIGKILL)
            except ProcessLookupError:
                pass
            finished = sum(h.done() for h in handles)
            wait_until(
                lambda finished=finished: (
                    sum(h.done() for h in handles) > finished or all(h.done() for h in handles)
                ),
                what="progress after a kill",
            )
        _, not_done = concurrent.futures.wait(handles, timeout=120)
    assert not not_done
    succeeded = crashed = 0
    for i, handle in enumerate(handles):
        assert handle.done()
        exc = handle.exception()
        if exc is None:
            assert handle.result() == i * i
            assert handle.state == "succeeded"
            succeeded += 1
        else:
            assert isinstance(exc, mp.WorkerCrashedError), exc
            assert handle.state == "failed"
            crashed += 1
    assert succeeded + crashed == len(handles)
    assert crashed > 0  # the killer really hit running tasks
    assert crashed <= kills  # a kill fails the task that ran, never the ones queued behind it
    assert succeeded > 0


def test_shutdown_leaves_no_worker_behind() -> None:
    pool = mp.Pool(workers=2, backend="process")
    assert pool.submit(square, 2).result(timeout=DEADLINE) == 4
    wait_until(lambda: len(worker_pids(pool)) == 2, what="both workers")  # (forked in turn)
    pids = worker_pids(pool)
    pool.shutdown()
    for pid in pids:
        assert not alive(pid)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(square, 1)


def stubborn(path: str) -> int:
    """A task that ignores the polite signals and never ends on its own."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return block_then_return(path, 1)


def test_shutdown_timeout_stops_a_stuck_task(tmp_path: Path) -> None:
    pool = mp.Pool(workers=1, backend="process")
    stuck = pool.submit(stubborn, str(tmp_path / "never"))
    queued = pool.submit(square, 3)
    wait_until(stuck.running, what="the stuck task to start")
    started = time.monotonic()
    pool.shutdown(wait=True, timeout=0.5)
    assert time.monotonic() - started < 10
    with pytest.raises(mp.TaskError, match="shut down"):
        stuck.result(timeout=1)
    assert queued.cancelled()


PARENT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, sys.argv[3])
    import makeparallel as mp
    from processes import children, worker_pids, workers_in

    def hang(path):
        while not os.path.exists(path):
            time.sleep(0.01)

    if __name__ == "__main__":
        pool = mp.Pool(workers=2, backend="process", start=sys.argv[2])
        handles = [pool.submit(hang, sys.argv[1]) for _ in range(2)]
        while workers_in(pool, "busy") < 2:
            time.sleep(0.01)
        # the workers, and with start="fork" the fork server: every child of this process
        pids = sorted(set(worker_pids(pool)) | set(children(os.getpid())))
        print(" ".join(map(str, pids)), flush=True)
        {tail}
    """
)


def run_parent(
    tmp_path: Path, tail: str, start: str = "spawn"
) -> tuple[subprocess.Popen[str], list[int]]:
    """A parent with two workers running (and, with start="fork", its fork server)."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT.replace("{tail}", tail))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "never"), start, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    pids = [int(p) for p in line.split()]
    expected = 3 if start == "fork" else 2
    assert len(pids) == expected, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, pids


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_workers_die_when_the_parent_is_killed(tmp_path: Path, start: str) -> None:
    proc, pids = run_parent(tmp_path, "time.sleep(600)", start)
    assert all(alive(pid) for pid in pids)
    proc.kill()
    proc.communicate()
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what="orphans to exit")


def test_a_cancelled_task_takes_the_processes_it_started_along(tmp_path: Path) -> None:
    # Killing only the worker would leave the task's processes running as orphans.
    path = tmp_path / "pids"
    with mp.Pool(workers=1, backend="process") as pool:
        handle = pool.submit(start_processes_then_hang, str(path))
        pids = started_pids(path)
        assert handle.cancel()
        wait_until(lambda: not any(alive(pid) for pid in pids), what="the task's processes to end")
        assert pool.submit(square, 3).result(timeout=DEADLINE) == 9


def test_a_task_past_its_timeout_takes_the_processes_it_started_along(tmp_path: Path) -> None:
    path = tmp_path / "pids"
    with mp.Pool(workers=1, backend="process") as pool:
        # long enough for a shell and its child to start, well before the deadline
        bounded = mp.parallel(start_processes_then_hang).options(pool=pool, timeout=2.0)
        handle = bounded(str(path))
        pids = started_pids(path)
        with pytest.raises(mp.TaskTimeoutError):
            handle.result(timeout=DEADLINE)
        wait_until(lambda: not any(alive(pid) for pid in pids), what="the task's processes to end")


def test_the_processes_a_task_started_end_when_the_parent_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "pids"
    script = tmp_path / "parent_of_a_busy_task.py"
    write_program(
        script,
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import makeparallel as mp
        from test_robustness import start_processes_then_hang

        if __name__ == "__main__":
            pool = mp.Pool(workers=1, backend="process")
            pool.submit(start_processes_then_hang, {str(path)!r})
            time.sleep(600)
        """,
    )
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    try:
        pids = started_pids(path)
    finally:
        proc.kill()
        proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids), what="the task's processes to end")


def test_one_ctrl_c_stops_everything(tmp_path: Path) -> None:
    proc, pids = run_parent(tmp_path, "[h.result() for h in handles]")
    # A terminal sends SIGINT to the whole foreground process group.
    os.killpg(proc.pid, signal.SIGINT)
    stderr = stderr_after_exit(proc, 15, "the parent, after one Ctrl-C,")
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in stderr
    assert stderr.count("Traceback") == 1, stderr  # the parent's own, no worker tracebacks
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what="workers to exit")


def test_normal_exit_waits_for_submitted_work(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = tmp_path / "fire_and_forget.py"
    write_program(
        script,
        f"""
        import makeparallel as mp

        @mp.parallel
        def write(path, text):
            with open(path, "w") as f:
                f.write(text)

        if __name__ == "__main__":
            write({str(out)!r}, "done")
        """,
    )
    run_program(script)
    assert out.read_text() == "done"


@pytest.mark.parametrize(
    "start",
    [
        "spawn",
        pytest.param(
            "fork", marks=pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
        ),
    ],
)
def test_a_crash_in_a_program_that_ignores_sigchld_is_not_reported_as_exit_0(
    tmp_path: Path, start: str
) -> None:
    # The system reaps the children of such a program as they end, so their exit
    # status is gone; subprocess reports 0 then, which would read as a clean exit.
    script = tmp_path / "sigchld.py"
    write_program(
        script,
        f"""
        import json, os, signal
        import makeparallel as mp

        def exit_hard(code):
            os._exit(code)

        def square(x):
            return x * x

        if __name__ == "__main__":
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
            with mp.Pool(workers=1, start={start!r}) as pool:
                try:
                    pool.submit(exit_hard, 3).result(timeout=30)
                except mp.WorkerCrashedError as error:
                    crash = {{"message": str(error), "exitcode": error.exitcode}}
                crash["next"] = pool.submit(square, 6).result(timeout=30)
            print(json.dumps(crash))
        """,
    )
    crash = json.loads(run_program(script).stdout)
    assert crash["exitcode"] is None
    assert "exited with code" not in crash["message"]
    assert "exit status is lost" in crash["message"]
    assert "ignores or handles SIGCHLD" in crash["message"]
    assert crash["next"] == 36


def test_no_fork_warning_with_threads_running(tmp_path: Path) -> None:
    script = tmp_path / "threads.py"
    write_program(
        script,
        """
        import os, signal, threading
        import makeparallel as mp

        def die():
            os.kill(os.getpid(), signal.SIGKILL)

        def square(x):
            return x * x

        if __name__ == "__main__":
            event = threading.Event()
            threading.Thread(target=event.wait, daemon=True).start()
            with mp.Pool(workers=2, backend="process") as pool:
                try:
                    pool.submit(die).result()
                except mp.WorkerCrashedError:
                    pass
                assert pool.submit(square, 5).result() == 25
            event.set()
        """,
    )
    result = run_program(script, "-W", "error")
    assert "DeprecationWarning" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_from_the_program_leaves_its_pools_alone(tmp_path: Path) -> None:
    # As a pre-forking server does: the program makes a pool, then forks children.
    gate = tmp_path / "gate"
    script = tmp_path / "forks.py"
    write_program(
        script,
        f"""
        import json, os, sys, time
        import makeparallel as mp

        def wait_for_gate():
            while not os.path.exists({str(gate)!r}):
                time.sleep(0.01)
            return os.getpid()

        def square(x):
            return x * x

        if __name__ == "__main__":
            pool = mp.Pool(workers=2, backend="process")
            running = pool.submit(wait_for_gate)
            while sorted(w["state"] for w in pool.workers_info()) != ["busy", "idle"]:
                time.sleep(0.01)
            workers = sorted(w["pid"] for w in pool.workers_info())
            read_end, write_end = os.pipe()
            child = os.fork()
            if child == 0:
                seen = {{}}
                try:
                    pool.submit(square, 2)
                except RuntimeError as error:
                    seen["submit"] = str(error)
                seen["cancel"] = running.cancel()
                try:
                    running.result(timeout=0.2)
                except TimeoutError:
                    seen["result"] = "timeout"
                seen["own pool"] = mp.parallel_map(square, [1, 2, 3])
                seen["shutdown"] = pool.shutdown().cancelled
                os.write(write_end, json.dumps(seen).encode())
                sys.exit(0)  # a normal exit: its atexit hooks run
            _, status = os.waitpid(child, 0)
            seen = json.loads(os.read(read_end, 65536))
            open({str(gate)!r}, "w").close()
            seen["running"] = running.result(timeout=30) in workers
            seen["after"] = pool.submit(square, 7).result(timeout=30)
            seen["same workers"] = sorted(w["pid"] for w in pool.workers_info()) == workers
            seen["child status"] = os.waitstatus_to_exitcode(status)
            pool.shutdown()
            print(json.dumps(seen))
        """,
    )
    done = run_program(script, "-W", "ignore::DeprecationWarning")  # the program's own fork
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "belongs to process" in seen["submit"]
    assert seen["cancel"] is False  # the parent's task is not the child's to stop
    assert seen["result"] == "timeout"  # nor its answer the child's to read
    assert seen["own pool"] == [1, 4, 9]  # the child's default pool is its own
    assert seen["shutdown"] == 0
    assert seen["child status"] == 0
    assert seen["running"] is True
    assert seen["after"] == 49
    assert seen["same workers"] is True  # the child stopped none of them


def test_workers_that_cannot_start_fail_the_tasks_instead_of_looping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sitecustomize.py").write_text("import os\nos._exit(7)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    # (fresh interpreters run sitecustomize; forked workers never start an interpreter)
    pool = mp.Pool(workers=1, backend="process", start="spawn")
    try:
        handle = pool.submit(square, 2)
        with pytest.raises(mp.BrokenPoolError, match="fail to start"):
            handle.result(timeout=DEADLINE)
        with pytest.raises(mp.BrokenPoolError, match="fail to start"):
            pool.submit(square, 3)
    finally:
        pool.shutdown(timeout=5)


class _SinkWithABug(FakeSink):
    """The engine's view of a pool (the Sink seam), whose report of the first result fails:
    a bug in code the I/O thread runs."""

    def __init__(self, tasks: list[Task]) -> None:
        super().__init__(tasks)
        self.taken: list[Task] = []
        self.reports: dict[int, tuple[bool, object]] = {}
        self.broken_by: BaseException | None = None
        self.gave_up = threading.Event()
        self._failed = False

    def take_some(self, limit: int, ahead: bool = False) -> list[Task]:
        taken = super().take_some(limit, ahead)
        self.taken += taken
        return taken

    def finished(self, task: Task, ok: bool, value: object) -> None:
        if not self._failed:
            self._failed = True
            raise RuntimeError("a bug in the I/O thread")
        self.reports[task.id] = (ok, value)

    def broken(self, error: BaseException) -> None:
        self.broken_by = error
        self.gave_up.set()


def test_a_failing_io_thread_still_ends_every_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Driven through the engine's Sink seam: after the bug, every other task the engine
    # took (running, or sent ahead) is reported, as failed, and the pool is told (it
    # then fails what it still queues).
    tasks = [Task(block_then_return, (str(tmp_path / "go"), 1), {}, mp.Handle())]
    tasks += [Task(square, (i,), {}, mp.Handle()) for i in range(3)]
    sink = _SinkWithABug(tasks)
    engine = ProcessBackend(1, "io-bug", WorkerSetup())
    for task in tasks:
        engine.prepare(task)
    engine.start(sink)
    try:
        engine.poke()
        (tmp_path / "go").touch()  # the first result arrives, and reporting it fails
        assert sink.gave_up.wait(DEADLINE)
    finally:
        engine.close(time.monotonic() + 5)
    assert isinstance(sink.broken_by, mp.TaskError)
    assert len(sink.taken) >= 2  # the next task goes out before the first result is reported
    assert {t.id for t in sink.taken[1:]} == set(sink.reports)
    assert all(not ok and isinstance(error, mp.TaskError) for ok, error in sink.reports.values())
    assert "I/O thread failed" in caplog.text


def test_ctrl_c_while_a_caller_reads_its_answer_loses_no_task(tmp_path: Path) -> None:
    # A caller in result() reads its task's answer from the worker itself. A Ctrl-C may
    # land there at any moment, also with the answer read but not yet reported; the
    # task must still end (with its value, or a TaskError saying it was lost) and the
    # pool must go on.
    script = tmp_path / "interrupted.py"
    write_program(
        script,
        f"""
        import json, os, signal, sys, threading, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import makeparallel as mp
        from processes import workers_in
        from test_robustness import block_then_return, square

        GATE = {str(tmp_path / "go")!r}

        if __name__ == "__main__":
            outcomes = []
            with mp.Pool(workers=1, backend="process") as pool:
                for round in range(5):
                    while workers_in(pool, "idle") != 1:
                        time.sleep(0.001)
                    running = pool.submit(block_then_return, GATE + str(round), 1)
                    sent = threading.Event()

                    def interrupt():
                        while workers_in(pool, "claimed") != 1:
                            time.sleep(0.001)
                        open(GATE + str(round), "w").close()  # the answer comes ...
                        os.kill(os.getpid(), signal.SIGINT)  # ... and Ctrl-C with it
                        sent.set()

                    threading.Thread(target=interrupt).start()
                    try:
                        running.result(timeout=30)
                        while not sent.is_set():
                            pass
                        time.monotonic()  # the signal lands here at the latest
                    except KeyboardInterrupt:
                        pass
                    try:
                        outcomes.append(running.result(timeout=30))
                    except mp.TaskError as error:
                        outcomes.append(type(error).__name__)
                    outcomes.append(pool.submit(square, 7).result(timeout=30))
            print(json.dumps(outcomes))
        """,
    )
    outcomes = json.loads(run_program(script).stdout)
    assert outcomes[1::2] == [49] * 5  # the pool goes on after each interruption
    assert all(outcome in (1, "TaskError") for outcome in outcomes[::2]), outcomes


def test_ctrl_c_while_a_caller_waits_for_its_answer_leaves_the_task_running(
    tmp_path: Path,
) -> None:
    # Interrupting a wait is not cancelling the task: as with any Future, the task goes
    # on and a later result() gets its value (the signal lands before any answer exists).
    script = tmp_path / "waiting.py"
    write_program(
        script,
        f"""
        import json, os, signal, sys, threading, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import makeparallel as mp
        from processes import workers_in
        from test_robustness import block_then_return

        GATE = {str(tmp_path / "go")!r}

        if __name__ == "__main__":
            with mp.Pool(workers=1, backend="process") as pool:
                while workers_in(pool, "idle") != 1:  # (a caller claims only a busy worker)
                    time.sleep(0.001)
                running = pool.submit(block_then_return, GATE, 5)
                while not running.running():
                    time.sleep(0.001)

                def interrupt():
                    # (as a rule the caller claims the worker; if it could not, its wait is
                    # interrupted all the same)
                    give_up = time.monotonic() + 5
                    while workers_in(pool, "claimed") != 1 and time.monotonic() < give_up:
                        time.sleep(0.001)
                    os.kill(os.getpid(), signal.SIGINT)

                threading.Thread(target=interrupt, daemon=True).start()
                try:
                    running.result(timeout=30)
                except KeyboardInterrupt:
                    pass
                still_running = running.running()
                open(GATE, "w").close()
                print(json.dumps([still_running, running.result(timeout=30)]))
        """,
    )
    assert json.loads(run_program(script).stdout) == [True, 5]


def test_a_caller_reading_its_answer_sees_a_crash_and_the_pool_goes_on() -> None:
    with mp.Pool(workers=1, backend="process") as pool:
        for _ in range(3):
            with pytest.raises(mp.WorkerCrashedError):
                pool.submit(die_by_signal, signal.SIGKILL).result(timeout=DEADLINE)
            assert pool.submit(square, 3).result(timeout=DEADLINE) == 9


def test_callbacks_of_a_task_read_by_its_caller_run_in_the_callers_thread(
    tmp_path: Path,
) -> None:
    # What a user can notice of the caller reading its own answer (documented).
    seen: list[str] = []
    with mp.Pool(workers=1, backend="process") as pool:
        handle = pool.submit(block_then_return, str(tmp_path / "go"), 5)
        handle.on_complete(lambda _: seen.append(threading.current_thread().name))
        wait_until(lambda: workers_in(pool, "busy") == 1, what="the task to start")
        opener = open_once_the_caller_reads(pool, tmp_path / "go")
        assert handle.result(timeout=DEADLINE) == 5
        opener.join(DEADLINE)
    assert seen == [threading.current_thread().name]


def open_once_the_caller_reads(pool: mp.Pool, gate: Path) -> threading.Thread:
    """Create ``gate`` as soon as a caller reads a worker's answer itself (it is "claimed")."""

    def open_gate() -> None:
        wait_until(lambda: workers_in(pool, "claimed") == 1, what="a caller reading its answer")
        gate.touch()

    opener = threading.Thread(target=open_gate)
    opener.start()
    return opener


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _children() -> int:
    me, count = str(os.getpid()), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            count += fields[1] == me
    return count


@pytest.mark.parametrize("backend", ["process", "thread", "serial"])
def test_no_leaks_across_100_pool_lifecycles(backend: str) -> None:
    def lifecycle() -> None:
        pool = mp.Pool(workers=2, backend=backend)
        timed = mp.parallel(square).options(pool=pool, timeout=30)
        assert timed(3).result(timeout=DEADLINE) == 9
        pool.shutdown()

    def state() -> tuple[int, int, int]:
        return (_open_fds(), threading.active_count(), _children())

    children = _children()  # (other tests' may still be there)
    lifecycle()  # the first one may load modules and open the lifeline pipe
    # (a pool's last processes and threads end just after shutdown() returns)
    wait_until(lambda: _children() == children, what="the first pool's processes to end")
    before = state()
    for _ in range(100):
        lifecycle()
    wait_until(lambda: state() == before, what=f"{state()} to come back to {before}")
