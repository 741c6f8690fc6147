"""Shutdown summaries and signal-driven graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import makeparallel as mp
from polling import alive, stderr_after_exit, wait_until
from programs import run_program

DEADLINE = 30.0


def wait_for_file(path: str) -> str:
    while not os.path.exists(path):
        time.sleep(0.005)
    return path


def hang() -> None:
    while True:
        time.sleep(0.01)


def test_shutdown_reports_finished_cancelled_and_stopped(tmp_path: Path) -> None:
    pool = mp.Pool(workers=2, backend="process")
    release = str(tmp_path / "go")
    finishing = pool.submit(wait_for_file, release)
    stuck = pool.submit(hang)
    queued = [pool.submit(abs, -i) for i in range(3)]
    wait_until(lambda: finishing.running() and stuck.running(), what="both tasks to start")
    Path(release).touch()
    summary = pool.shutdown(wait=True, cancel_pending=True, timeout=1.0)
    assert summary == mp.ShutdownSummary(finished=1, cancelled=3, stopped=1, still_running=0)
    assert finishing.result() == release
    assert all(h.cancelled() for h in queued)
    with pytest.raises(mp.TaskError, match="shut down before it finished"):
        stuck.result()
    assert pool.shutdown() == mp.ShutdownSummary()  # the second call has nothing to do


def test_shutdown_without_waiting_reports_what_is_left(tmp_path: Path) -> None:
    pool = mp.Pool(workers=1, backend="thread")
    release = str(tmp_path / "go")
    running = pool.submit(wait_for_file, release)
    wait_until(running.running, what="the task to start")
    queued = pool.submit(abs, -1)
    summary = pool.shutdown(wait=False, cancel_pending=True)
    assert summary == mp.ShutdownSummary(cancelled=1, still_running=1)
    assert queued.cancelled()
    Path(release).touch()
    assert running.result(timeout=DEADLINE) == release


def test_install_signal_handlers_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="timeout"):
        mp.install_signal_handlers(timeout=0)
    with pytest.raises(TypeError, match="signal numbers"):
        mp.install_signal_handlers(signals=["TERM"])  # type: ignore[list-item]


GRACEFUL = textwrap.dedent(
    """
    import os, sys, time
    import makeparallel as mp

    def finish(path, seconds):
        time.sleep(seconds)
        open(path, "w").close()

    def hang():
        while True:
            time.sleep(0.01)

    if __name__ == "__main__":
        out = sys.argv[1]
        mp.install_signal_handlers(timeout=2)
        pool = mp.Pool(workers=2, backend="process")
        finishing = pool.submit(finish, os.path.join(out, "finished"), 0.5)
        stuck = pool.submit(hang)
        queued = [pool.submit(finish, os.path.join(out, f"queued{i}"), 0) for i in range(3)]
        while [w["state"] for w in pool.workers_info()].count("busy") < 2:
            time.sleep(0.01)
        print(" ".join(str(w["pid"]) for w in pool.workers_info()), flush=True)
        stuck.result()
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_shuts_down_gracefully_within_the_deadline(
    tmp_path: Path, signum: signal.Signals
) -> None:
    script = tmp_path / "service.py"
    script.write_text(GRACEFUL)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2
    os.killpg(proc.pid, signum)  # as systemd or a terminal would: the whole group
    stderr = stderr_after_exit(proc, 20, "the service, after the signal,")
    if signum == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, stderr
    else:
        assert "KeyboardInterrupt" in stderr
    assert (tmp_path / "finished").exists(), "the running task was not allowed to finish"
    assert not any((tmp_path / f"queued{i}").exists() for i in range(3))
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what="workers to exit")


STUCK_AT_EXIT = textwrap.dedent(
    """
    import signal, sys, time
    import makeparallel as mp

    def stubborn():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            time.sleep(0.01)

    if __name__ == "__main__":
        mp.configure(exit_timeout=float(sys.argv[1]))
        pool = mp.Pool(workers=1, backend="process")
        handle = pool.submit(stubborn)
        while [w["state"] for w in pool.workers_info()] != ["busy"]:
            time.sleep(0.01)
        print(" ".join(str(w["pid"]) for w in pool.workers_info()), flush=True)
    """
)


def test_interpreter_exit_never_hangs_on_a_stuck_worker(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_AT_EXIT)
    result = run_program(script, args=("0.5",))
    assert "were stopped" in result.stderr
    pids = [int(p) for p in result.stdout.split()]
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10, what="the worker to go")


def test_exit_timeout_is_checked() -> None:
    with pytest.raises(ValueError, match="exit_timeout"):
        mp.configure(exit_timeout=-1)
