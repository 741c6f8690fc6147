"""Pool(start="fork"): workers forked from a copy of the parent taken as the pool starts.

Each scenario runs in a fresh interpreter, as a user's program would: forking
is only safe while the parent has one thread, and this test process has many.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest

import makeparallel as mp
from programs import run_program, write_program

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="start='fork' needs os.fork")


def run_script(tmp_path: Path, body: str, timeout: float = 60) -> dict[str, object]:
    """Run ``body`` as the __main__ of a fresh interpreter; it prints one JSON object."""
    script = tmp_path / "program.py"
    write_program(script, body)
    done = run_program(script, "-W", "error", args=(str(tmp_path),), timeout=timeout)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# A function defined in __main__ travels by value, with the globals it names; the
# state a worker has of its own shows through ``sys.modules["__main__"]``.
LOOK = """
import json, os, sys
import makeparallel as mp

def look():
    return getattr(sys.modules["__main__"], "STATE", None)
"""


def test_workers_see_the_parent_as_it_was_when_the_pool_started(tmp_path: Path) -> None:
    found = run_script(
        tmp_path,
        LOOK
        + """
if __name__ == "__main__":
    STATE = "before the pool"
    with mp.Pool(workers=2, start="fork") as pool:
        STATE = "after the pool started"
        seen = [pool.submit(look).result() for _ in range(6)]
    with mp.Pool(workers=1, start="spawn") as pool:
        fresh = pool.submit(look).result()
    print(json.dumps({"seen": seen, "fresh": fresh}))
""",
    )
    assert found["seen"] == ["before the pool"] * 6
    assert found["fresh"] is None  # a fresh interpreter has its own __main__


def test_the_default_pool_forks_when_configured_to(tmp_path: Path) -> None:
    found = run_script(
        tmp_path,
        LOOK
        + """
remote = mp.parallel(look)

if __name__ == "__main__":
    STATE = "before the first call"
    mp.configure(workers=2, start="fork")
    seen = remote().result()
    mp.configure(workers=2, start="spawn")
    fresh = remote().result()
    print(json.dumps({"seen": seen, "fresh": fresh}))
""",
    )
    assert found == {"seen": "before the first call", "fresh": None}


def test_crashes_and_timeouts_are_reported_and_workers_replaced(tmp_path: Path) -> None:
    found = run_script(
        tmp_path,
        """
        import json, os, signal, time
        import makeparallel as mp

        def crash(code):
            os._exit(code)

        def hang():
            time.sleep(60)

        def pid():
            return os.getpid()

        if __name__ == "__main__":
            codes, pids = [], set()
            # One worker: the first is forked from here, every later one by the fork server.
            with mp.Pool(workers=1, start="fork") as pool:
                try:  # the first task reaches the first worker before it is ready
                    pool.submit(crash, 7).result()
                except mp.WorkerCrashedError as error:
                    codes.append(error.exitcode)
                for code in (3, 4, -signal.SIGKILL):
                    pids.add(pool.submit(pid).result())
                    try:
                        if code < 0:
                            pool.submit(os.kill, pool.submit(pid).result(), -code).result()
                        else:
                            pool.submit(crash, code).result()
                    except mp.WorkerCrashedError as error:
                        codes.append(error.exitcode)
                hung = mp.parallel(hang).options(timeout=0.3, pool=pool)()
                try:
                    hung.result(timeout=30)
                except mp.TaskTimeoutError:
                    codes.append("timeout")
                pids.add(pool.submit(pid).result())
            try:
                os.waitpid(-1, os.WNOHANG)
                children_left = True
            except ChildProcessError:
                children_left = False
            print(json.dumps({"codes": codes, "pids": len(pids), "children_left": children_left}))
        """,
    )
    assert found["codes"] == [7, 3, 4, -signal.SIGKILL, "timeout"]
    assert found["pids"] == 4  # a new worker after each crash and after the timeout
    assert found["children_left"] is False  # workers and the fork server were all reaped


def test_every_task_ends_once_while_forked_workers_are_killed_at_random(
    tmp_path: Path,
) -> None:
    found = run_script(
        tmp_path,
        """
        import concurrent.futures, json, os, random, signal, time
        import makeparallel as mp

        def slow_square(x):
            time.sleep(0.005)
            return x * x

        def wait_until(condition):
            deadline = time.monotonic() + 30
            while not condition():
                assert time.monotonic() < deadline, "timed out"
                time.sleep(0.002)

        if __name__ == "__main__":
            rng = random.Random(4321)
            with mp.Pool(workers=2, start="fork") as pool:
                handles = [pool.submit(slow_square, i) for i in range(400)]
                kills = 0
                for _ in range(25):
                    wait_until(lambda: any(h.running() for h in handles)
                               or all(h.done() for h in handles))
                    running = [h for h in handles if h.running() and h.worker]
                    if not running:
                        break
                    try:
                        os.kill(int(rng.choice(running).worker.split()[1]), signal.SIGKILL)
                        kills += 1
                    except ProcessLookupError:
                        pass
                    done = sum(h.done() for h in handles)
                    wait_until(lambda: sum(h.done() for h in handles) > done
                               or all(h.done() for h in handles))
                _, not_done = concurrent.futures.wait(handles, timeout=120)
            right = sum(h.exception() is None and h.result() == i * i
                        for i, h in enumerate(handles) if h.done())
            crashed = sum(isinstance(h.exception(), mp.WorkerCrashedError)
                          for h in handles if h.done())
            print(json.dumps({"not_done": len(not_done), "right": right,
                              "crashed": crashed, "kills": kills}))
        """,
        timeout=180,
    )
    assert found["not_done"] == 0
    assert found["right"] + found["crashed"] == 400  # each ended once, rightly
    assert 0 < found["crashed"] <= found["kills"]  # only the tasks that were running


def test_a_cancelled_task_takes_the_processes_it_started_along(tmp_path: Path) -> None:
    # Both the first worker (forked from here) and one forked by the fork server.
    found = run_script(
        tmp_path,
        """
        import json, os, subprocess, sys, time
        import makeparallel as mp

        def start_then_hang(path):
            shell = subprocess.Popen(
                ["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, text=True
            )
            grandchild = shell.stdout.readline().strip()
            with open(path + ".tmp", "w") as out:
                out.write(f"{shell.pid} {grandchild}")
            os.replace(path + ".tmp", path)
            time.sleep(300)

        def alive(pid):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                return False

        def wait_until(condition):
            deadline = time.monotonic() + 30
            while not condition():
                assert time.monotonic() < deadline
                time.sleep(0.005)

        if __name__ == "__main__":
            ended = []
            with mp.Pool(workers=1, start="fork") as pool:
                for round in range(2):  # the second worker is the fork server's
                    path = os.path.join(sys.argv[1], f"pids{round}")
                    handle = pool.submit(start_then_hang, path)
                    wait_until(lambda: os.path.exists(path))
                    pids = [int(pid) for pid in open(path).read().split()]
                    started = all(map(alive, pids))
                    handle.cancel()
                    wait_until(lambda: not any(map(alive, pids)))
                    ended.append(started)
            print(json.dumps({"ended": ended}))
        """,
    )
    assert found["ended"] == [True, True]  # they ran, and ended with the task


def test_a_pipe_the_parent_closes_reaches_eof(tmp_path: Path) -> None:
    # If the fork server or a worker kept a copy of the write end, the reader would hang.
    found = run_script(
        tmp_path,
        """
        import json, os, select
        import makeparallel as mp

        def square(x):
            return x * x

        if __name__ == "__main__":
            read_end, write_end = os.pipe()
            with mp.Pool(workers=2, start="fork") as pool:
                assert pool.submit(square, 3).result() == 9
                os.close(write_end)
                ready, _, _ = select.select([read_end], [], [], 30)
                eof = bool(ready) and os.read(read_end, 1) == b""
            print(json.dumps({"eof": eof}))
        """,
    )
    assert found["eof"] is True


def test_a_pool_whose_fork_server_was_killed_goes_on(tmp_path: Path) -> None:
    # The out-of-memory killer may pick the fork server: it holds a copy of the parent.
    found = run_script(
        tmp_path,
        """
        import json, logging, os, signal, sys
        sys.path.insert(0, TESTS)
        import makeparallel as mp
        from processes import children

        def square(x):
            return x * x

        def die():
            os.kill(os.getpid(), signal.SIGKILL)

        class Keep(logging.Handler):
            def __init__(self):
                super().__init__()
                self.messages = []

            def emit(self, record):
                self.messages.append(record.getMessage())

        if __name__ == "__main__":
            kept = Keep()
            logging.getLogger("makeparallel").addHandler(kept)
            with mp.Pool(workers=3, start="fork") as pool:
                # its children: the first worker, forked straight from here, and the fork server
                workers = {w["pid"] for w in pool.workers_info()}
                (server,) = [pid for pid in children(os.getpid()) if pid not in workers]
                os.kill(server, signal.SIGKILL)
                before = [pool.submit(square, i).result(timeout=30) for i in range(6)]
                try:
                    pool.submit(die).result(timeout=30)
                    crash = None
                except mp.WorkerCrashedError as error:
                    crash = type(error).__name__
                handles = [pool.submit(square, i) for i in range(20)]
                after = [h.result(timeout=30) for h in handles]
            print(json.dumps({
                "before": before, "crash": crash, "after": after, "logged": kept.messages,
            }))
        """.replace("TESTS", repr(str(Path(__file__).parent))),
    )
    assert found["before"] == [i * i for i in range(6)]
    assert found["crash"] == "WorkerCrashedError"
    assert found["after"] == [i * i for i in range(20)]
    logged = found["logged"]
    assert isinstance(logged, list)
    assert any("fork server" in m and "fresh interpreters" in m for m in logged), logged


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="lists processes through /proc")
def test_shutdown_leaves_no_process_behind_however_early_it_comes(tmp_path: Path) -> None:
    # The pool's processes are in the program's process group; after shutdown(wait=True)
    # none may be left, not even a worker the fork server was about to fork.
    found = run_script(
        tmp_path,
        """
        import json, os
        import makeparallel as mp

        def square(x):
            return x * x

        def others():
            found = []
            for name in os.listdir("/proc"):
                if not name.isdigit() or int(name) == os.getpid():
                    continue
                try:
                    with open(f"/proc/{name}/stat") as stat:
                        fields = stat.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # it has just ended
                if int(fields[2]) == os.getpid():  # in our process group, zombie or not
                    found.append(f"pid {name}, state {fields[0]}")
            return found

        if __name__ == "__main__":
            os.setpgid(0, 0)
            left = []
            for workers in (2, 3, 4, 2, 3, 4):
                with mp.Pool(workers=workers, start="fork") as pool:
                    assert pool.submit(square, 3).result() == 9
                left += others()
                mp.Pool(workers=workers, start="fork").shutdown()
                left += others()
            print(json.dumps({"left": left}))
        """,
    )
    assert found["left"] == []


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_a_program_with_more_than_1024_descriptors_open(tmp_path: Path, start: str) -> None:
    # A server with many connections open: select() cannot watch descriptors past 1023.
    found = run_script(
        tmp_path,
        f"""
        import json, os, resource
        import makeparallel as mp

        def crash():
            os._exit(3)

        if __name__ == "__main__":
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if hard != resource.RLIM_INFINITY and hard < 2048:
                print(json.dumps({{"skip": f"the hard limit on open files is {{hard}}"}}))
                raise SystemExit
            resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
            held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
            with mp.Pool(workers=2, start={start!r}) as pool:
                squares = list(pool.map(pow, range(20), [2] * 20))
                try:
                    pool.submit(crash).result()
                except mp.WorkerCrashedError as error:
                    code = error.exitcode
                after = pool.submit(abs, -5).result()
            try:
                os.waitpid(-1, os.WNOHANG)
                children_left = True
            except ChildProcessError:
                children_left = False
            print(json.dumps({{"squares": squares, "code": code, "after": after,
                              "children_left": children_left, "highest": max(held)}}))
        """,
    )
    if "skip" in found:
        pytest.skip(str(found["skip"]))
    assert found["highest"] >= 1024
    assert found["squares"] == [i * i for i in range(20)]
    assert found["code"] == 3
    assert found["after"] == 5  # the crashed worker was replaced
    assert found["children_left"] is False


def test_memory_limit_counts_only_what_a_worker_adds(tmp_path: Path) -> None:
    # A forked worker shares the parent's 200 MB: its resident size counts them, its own
    # memory does not; the limit must judge the latter.
    found = run_script(
        tmp_path,
        """
        import json, time
        import makeparallel as mp

        ballast = b"x" * 200_000_000  # no task names it, so none carries it along

        def small():
            return 1

        def grow():
            mine = b"y" * 300_000_000
            time.sleep(60)
            return len(mine)

        if __name__ == "__main__":
            with mp.Pool(workers=1, start="fork", memory_limit="150MB",
                         memory_limit_action="kill") as pool:
                sizes = [pool.submit(small).result() for _ in range(3)]
                try:
                    pool.submit(grow).result(timeout=30)
                    stopped = False
                except mp.MemoryLimitError:
                    stopped = True
                after = pool.submit(small).result()
            print(json.dumps({"sizes": sizes, "stopped": stopped, "after": after}))
        """,
    )
    assert found == {"sizes": [1, 1, 1], "stopped": True, "after": 1}


def test_a_fork_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    found = run_script(
        tmp_path,
        """
        import errno, json, os
        import makeparallel as mp
        from makeparallel.backends.process import forkserver

        if __name__ == "__main__":
            with mp.Pool(workers=1, start="fork") as pool:  # load everything once
                pool.submit(abs, -1).result()
            fds = len(os.listdir("/proc/self/fd"))
            real_fork, forks = os.fork, []

            def fork():  # the first worker starts; the fork server cannot
                if forks:
                    raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
                forks.append(1)
                return real_fork()

            forkserver.os.fork = fork
            try:
                mp.Pool(workers=2, start="fork")
                error = None
            except OSError as problem:
                error = problem.errno
            forkserver.os.fork = real_fork
            try:
                os.waitpid(-1, os.WNOHANG)
                children_left = True
            except ChildProcessError:
                children_left = False
            print(json.dumps({"error": error, "fds": len(os.listdir("/proc/self/fd")) - fds,
                              "children_left": children_left}))
        """,
    )
    assert found == {"error": errno.EAGAIN, "fds": 0, "children_left": False}


def test_start_is_checked() -> None:
    with pytest.raises(ValueError, match="start must be 'auto'"):
        mp.Pool(workers=1, start="forkserver")
    with pytest.raises(ValueError, match="needs backend='process'"):
        mp.Pool(workers=1, backend="thread", start="fork")
    with pytest.raises(ValueError, match="start must be 'auto'"):
        mp.configure(start="vfork")


def test_auto_forks_a_program_without_threads_and_not_one_with_them(tmp_path: Path) -> None:
    found = run_script(
        tmp_path,
        LOOK
        + """
import threading

def draw():
    import os, numpy
    return os.getpid(), int(numpy.random.randint(0, 2**31))

if __name__ == "__main__":
    import numpy
    numpy.random.seed(1234)  # every forked worker starts from this state ...
    STATE = "before the pool"
    with mp.Pool(workers=2) as pool:
        forked = {"start": pool.start, "seen": pool.submit(look).result()}
        first = {}
        for pid, number in [h.result() for h in [pool.submit(draw) for _ in range(20)]]:
            first.setdefault(pid, number)  # the first number each worker drew
        forked["first"] = sorted(first.values())
        forked["parent"] = int(numpy.random.randint(0, 2**31))  # what the copies started at
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    with mp.Pool(workers=1) as pool:
        fresh = {"start": pool.start, "seen": pool.submit(look).result()}
    stop.set()
    print(json.dumps({"forked": forked, "fresh": fresh}))
""",
    )
    assert found["forked"]["start"] == "fork"
    assert found["forked"]["seen"] == "before the pool"
    # ... and draws numbers of its own: not the parent's next one, nor each other's
    firsts = found["forked"]["first"]
    assert found["forked"]["parent"] not in firsts
    assert len(set(firsts)) == len(firsts)
    assert found["fresh"] == {"start": "spawn", "seen": None}  # another thread ran: fresh
