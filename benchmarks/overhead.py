"""What a pool costs per task: many small submits, one round trip, a cold start.

    python benchmarks/overhead.py [--quick | --smoke] [--out benchmarks/results/overhead.json]

* per-task overhead: 5 000 submits of a no-op, then every result; the wall
  time divided by the number of tasks (warm pools of N = usable CPUs workers);
* round trip: one tiny task submitted and its result read, one after the
  other, on a warm pool; each sample is the median of 200 round trips. Three
  reference rows show the floor of this machine: 40 bytes sent to an echo
  process over a socket pair and read back by the sending thread itself,
  both ends sleeping until data arrives; the same with both ends polling for
  up to 500 µs first (as makeparallel's workers and waiting callers do, see
  docs/design.md); and with a reader thread that hands the reply over
  through a condition variable (as a pool's I/O thread does) - no pool, no
  pickling, no Python function;
* cold start: from creating a 2-worker pool to its first result (the pool
  is shut down afterwards, untimed). A reference row times ``python -c pass``:
  no pool whose workers are fresh interpreters can start faster than that,
  while ``fork`` copies a running interpreter and skips it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
import workloads
from machine import usable_cpus
from measure import Contender, Measure, run_rounds, timed
from report import Section, main_for, rounds, table

NAME = "overhead"
TASKS = {"full": 5_000, "quick": 5_000, "smoke": 50}
ROUND_TRIPS = {"full": 200, "quick": 200, "smoke": 5}
COLD_WORKERS = 2


@contextlib.contextmanager
def many_submits(peer: peers.Peer, workers: int, tasks: int) -> Iterator[Measure]:
    with peers.warm_pool(peer, workers) as pool:

        def measure() -> float:
            def run() -> list[Any]:
                futures = [pool.submit(workloads.noop) for _ in range(tasks)]
                return [f.result() for f in futures]

            return timed(run, lambda results: results == [None] * tasks) / tasks

        yield measure


@contextlib.contextmanager
def round_trips(peer: peers.Peer, workers: int, count: int) -> Iterator[Measure]:
    with peers.warm_pool(peer, workers) as pool:

        def measure() -> float:
            samples = []
            for i in range(count):
                started = time.perf_counter()
                result = pool.call(workloads.echo, i)
                samples.append(time.perf_counter() - started)
                if result != i:
                    raise RuntimeError(f"wrong result: {result!r} for {i}")
            return statistics.median(samples)

        yield measure


_ECHO = """
import select, socket, sys, time
sock = socket.socket(fileno=int(sys.argv[1]))
spin = float(sys.argv[2])
poller = select.poll()
poller.register(sock.fileno(), select.POLLIN)
while True:
    end = time.perf_counter() + spin
    while time.perf_counter() < end and not poller.poll(0):
        pass
    poller.poll()
    data = sock.recv(64)
    if not data:
        break
    sock.sendall(data)
"""
POLL_SECONDS = 0.0005  # as makeparallel's SPIN_SECONDS


@contextlib.contextmanager
def ping_pong(count: int, reader_thread: bool, polling: bool = False) -> Iterator[Measure]:
    """The machine's floor for a round trip between two processes (no pool)."""
    ours, theirs = socket.socketpair()
    spin = POLL_SECONDS if polling else 0.0
    echo = subprocess.Popen(
        [sys.executable, "-c", _ECHO, str(theirs.fileno()), str(spin)],
        pass_fds=[theirs.fileno()],
    )
    poller = select.poll()
    poller.register(ours.fileno(), select.POLLIN)
    theirs.close()
    arrived = threading.Condition()
    inbox: list[bytes] = []

    def read() -> None:
        while data := ours.recv(64):
            with arrived:
                inbox.append(data)
                arrived.notify()

    def receive() -> bytes:
        if not reader_thread:
            end = time.perf_counter() + spin
            while time.perf_counter() < end and not poller.poll(0):
                pass
            return ours.recv(64)
        with arrived:
            arrived.wait_for(lambda: inbox)
            return inbox.pop()

    reader = threading.Thread(target=read, daemon=True)
    if reader_thread:
        reader.start()
    try:

        def measure() -> float:
            samples = []
            for _ in range(count):
                started = time.perf_counter()
                ours.sendall(b"x" * 40)
                receive()
                samples.append(time.perf_counter() - started)
            return statistics.median(samples)

        yield measure
    finally:
        ours.shutdown(socket.SHUT_RDWR)
        echo.wait(10)
        if reader_thread:
            reader.join(10)
        ours.close()


@contextlib.contextmanager
def cold_start(peer: peers.Peer) -> Iterator[Measure]:
    def measure() -> float:
        started = time.perf_counter()
        pool = peer.start(COLD_WORKERS)
        try:
            if pool.submit(workloads.echo, 7).result() != 7:
                raise RuntimeError("wrong result")
            return time.perf_counter() - started
        finally:
            pool.close()

    yield measure


@contextlib.contextmanager
def fresh_interpreter() -> Iterator[Measure]:
    """The floor of a cold start with fresh interpreters: ``python -c pass``, start to exit."""
    command = [
        sys.executable,
        *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
        "-c",
        "pass",
    ]
    yield lambda: timed(lambda: subprocess.run(command, check=True))


ROUND_TRIP_CALLS = {
    "ppe": "submit(...).result()",
    "mp_pool": "apply(...)",
    "pebble": "schedule(...).result()",
    "loky": "submit(...).result()",
    "makeparallel": "submit(...).result()",
    "makeparallel_quiet": "submit(...).result()",
}

COLD = (
    peers.Peer("ppe_fork", "ProcessPoolExecutor (fork)", peers.process_pool_executor("fork")),
    peers.Peer(
        "ppe_forkserver",
        "ProcessPoolExecutor (forkserver)",
        peers.process_pool_executor("forkserver"),
    ),
    peers.Peer("ppe_spawn", "ProcessPoolExecutor (spawn)", peers.process_pool_executor("spawn")),
    peers.Peer(
        "mp_pool", "multiprocessing.Pool", peers.multiprocessing_pool, "default start method"
    ),
    peers.PEBBLE,
    peers.Peer("loky", "loky.ProcessPoolExecutor", peers.loky_new, "a new executor each time"),
    peers.Peer(
        "makeparallel",
        "makeparallel Pool",
        peers.makeparallel_pool(start="auto"),
        'the default, start="auto": forked when no other thread runs',
    ),
    peers.Peer(
        "makeparallel_spawn",
        'makeparallel Pool(start="spawn")',
        peers.makeparallel_pool(start="spawn"),
        "fresh interpreters",
    ),
    peers.Peer(
        "makeparallel_fork",
        'makeparallel Pool(start="fork")',
        peers.makeparallel_pool(start="fork"),
        "forked from this process",
    ),
)


def run(size: str, repetitions: int) -> Section:
    workers = usable_cpus()
    tasks, count = TASKS[size], ROUND_TRIPS[size]
    submits = tuple(
        Contender(p.key, p.label, partial(many_submits, p, workers, tasks), p.note)
        for p in peers.SUBMITTING
    )
    trips = (
        *(
            Contender(
                p.key, p.label, partial(round_trips, p, workers, count), ROUND_TRIP_CALLS[p.key]
            )
            for p in peers.SUBMITTING
        ),
        Contender(
            "floor_socket",
            "floor: socket ping-pong",
            partial(ping_pong, count, False),
            "40 bytes to an echo process and back, no pool",
        ),
        Contender(
            "floor_polling",
            "floor: socket ping-pong, polling first",
            partial(ping_pong, count, False, True),
            "the same, both ends polling up to 500 µs before they sleep",
        ),
        Contender(
            "floor_thread",
            "floor: ping-pong via a reader thread",
            partial(ping_pong, count, True),
            "the same, received by a second thread and handed over with a condition",
        ),
    )
    colds = (
        *(Contender(p.key, p.label, partial(cold_start, p), p.note) for p in COLD),
        Contender(
            "floor_interpreter",
            "floor: a fresh interpreter",
            fresh_interpreter,
            "python -c pass, from start to exit: no pool, no imports of its own",
        ),
    )
    return {
        "title": "Overhead per task, round trip and cold start",
        "description": (
            f"no-op and echo tasks; warm pools of {workers} workers (one short sleep task per "
            "worker before timing), cold pools of 2; "
            f"{rounds(repetitions)}"
        ),
        "repetitions": repetitions,
        "tables": [
            table(
                "per_task",
                "Per-task overhead",
                run_rounds(submits, repetitions, "per-task overhead"),
                unit="µs per task",
                scale=1e6,
                what=(
                    f"{tasks} submits of a no-op, then every result; wall time / {tasks}. "
                    "multiprocessing.Pool uses apply_async, pebble schedule, the others submit."
                ),
            ),
            table(
                "round_trip",
                "Round trip of one tiny task",
                run_rounds(trips, repetitions, "round trip"),
                unit="µs",
                scale=1e6,
                what=(
                    "one task submitted and its result read, then the next; each sample is "
                    f"the median of {count} round trips on a warm pool"
                ),
            ),
            table(
                "cold_start",
                "Cold start",
                run_rounds(colds, repetitions, "cold start"),
                unit="ms",
                scale=1e3,
                what=(
                    f"from creating a {COLD_WORKERS}-worker pool to its first result "
                    "(shutting it down is not timed)"
                ),
            ),
        ],
    }


def main(argv: list[str] | None = None) -> int:
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
