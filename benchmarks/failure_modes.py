"""What happens to a pool when things go wrong: makeparallel next to the standard pools.

    python benchmarks/failure_modes.py [--wait SECONDS]

Three situations, each in a fresh child interpreter:

* crash: one of four tasks kills its own worker with SIGKILL (as the OOM
  killer would); what happens to the other tasks and to the next submit?
* orphans: the parent is killed with SIGKILL while two tasks run; are the
  workers still alive a few seconds later?
* hang: a task never returns; can the caller stop it and keep using the pool?
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    import concurrent.futures as cf
    import multiprocessing as mpx
    import makeparallel as mp

    def die(x):
        if x == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    def hang(x):
        while True:
            time.sleep(0.01)

    WAIT = float(sys.argv[3])

    def crash(kind):
        if kind == "makeparallel":
            with mp.Pool(2, backend="process") as pool:
                handles = [pool.submit(die, i) for i in range(4)]
                outcomes = [
                    type(h.exception(timeout=WAIT)).__name__ if h.exception(timeout=WAIT) else "ok"
                    for h in handles
                ]
                after = pool.submit(die, 5).result(timeout=WAIT)
            return f"{outcomes}; next submit -> {after}"
        if kind == "ProcessPoolExecutor":
            with cf.ProcessPoolExecutor(2) as ex:
                futures = [ex.submit(die, i) for i in range(4)]
                outcomes = [
                    type(f.exception(timeout=WAIT)).__name__ if f.exception(timeout=WAIT) else "ok"
                    for f in futures
                ]
                try:
                    after = ex.submit(die, 5).result(timeout=WAIT)
                except Exception as exc:
                    after = type(exc).__name__
            return f"{outcomes}; next submit -> {after}"
        pool = mpx.Pool(2)
        result = pool.map_async(die, range(4))
        try:
            return str(result.get(timeout=WAIT))
        except mpx.TimeoutError:
            return f"no result after {WAIT:g} s (the map waits forever)"
        finally:
            pool.terminate()

    def orphans(kind):
        if kind == "makeparallel":
            pool = mp.Pool(2, backend="process")
            handles = [pool.submit(hang, i) for i in range(2)]
            while not all(h.running() for h in handles):
                time.sleep(0.01)
            pids = [w["pid"] for w in pool.workers_info()]
        elif kind == "ProcessPoolExecutor":
            ex = cf.ProcessPoolExecutor(2)
            for i in range(2):
                ex.submit(hang, i)
            time.sleep(1)
            pids = list(ex._processes)
        else:
            pool = mpx.Pool(2)
            pool.map_async(hang, range(2))
            time.sleep(1)
            pids = [w.pid for w in pool._pool]
        print(" ".join(map(str, pids)), flush=True)
        time.sleep(3600)

    def stop_hung(kind):
        if kind == "makeparallel":
            with mp.Pool(2, backend="process") as pool:
                h = mp.parallel(hang).options(pool=pool, timeout=0.5)(0)
                error = type(h.exception(timeout=WAIT)).__name__
                return f"{error} after 0.5 s; pool still works -> {pool.submit(die, 7).result()}"
        if kind == "ProcessPoolExecutor":
            ex = cf.ProcessPoolExecutor(2)
            f = ex.submit(hang, 0)
            time.sleep(0.5)
            cancelled = f.cancel()
            running = f.running()
            for p in list(ex._processes.values()):
                p.kill()  # clean up by hand: the executor has no way to stop one task
            return f"cancel() -> {cancelled}, still running -> {running}: no way to stop it"
        pool = mpx.Pool(2)
        pool.apply_async(hang, (0,))
        pool.terminate()
        return "no per-task stop; only terminate() of the whole pool"

    if __name__ == "__main__":
        print(globals()[sys.argv[1]](sys.argv[2]), flush=True)
        os._exit(0)  # a broken standard pool may hang the interpreter's exit
    """
)

KINDS = ("makeparallel", "ProcessPoolExecutor", "multiprocessing.Pool")


def run_child(what: str, kind: str, wait: float) -> str:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, what, kind, str(wait)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else f"(no answer; exit {result.returncode})"


def orphans(kind: str, wait: float) -> str:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, "orphans", kind, str(wait)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    proc.kill()
    proc.wait()
    proc.stdout.close()  # surviving workers may hold the pipe open: do not read to its end
    time.sleep(wait)  # the question is what is still alive after a while
    alive = [pid for pid in pids if _alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return f"{len(alive)} of {len(pids)} workers still alive {wait:g} s after the parent died"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for an answer")
    wait = parser.parse_args(argv).wait
    for title, what in (
        ("one worker killed by SIGKILL", "crash"),
        ("parent killed by SIGKILL", "orphans"),
        ("stop one hung task", "stop_hung"),
    ):
        print(f"## {title}")
        for kind in KINDS:
            answer = orphans(kind, wait) if what == "orphans" else run_child(what, kind, wait)
            print(f"- {kind}: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
