"""A long randomized fault run against a process pool: does every task end as it should?

    python benchmarks/soak.py --tasks 100000 --seed 7 [--start spawn|fork] [--workers 2]

Tasks go to one pool in waves. Of every hundred, about one calls ``os._exit``,
one sends itself SIGKILL, one segfaults, one hangs past its timeout, one
cancel() hits a recent task (waiting, running or done), three raise, and the
rest return at once or after a millisecond. After each wave every task must
have ended, within ``--deadline`` seconds, as ``fault_mix`` says it must
(``lost`` counts those that did not end, ``wrong`` those that ended otherwise).
A pool that lost tasks is shut down and replaced, so one stuck pool does not
hide what the rest of the run would find. Every tenth wave, and whenever
tasks are lost, the pool's threads are watched for a moment: a pool with
nothing to do must use no CPU. After each shutdown no process of the pool
may be left (``orphans``), nor any of its threads.

Prints one summary line, ``N tasks: lost L, wrong W, orphans O``, and one on
the pool's threads; details of the first problems go to stderr. Exits 1 if
anything was found.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import fault_mix
import makeparallel as mp
from fault_mix import Job

GRACE = 5.0  # seconds a shut-down pool's processes and threads get to go
SHOWN = 5  # problems of each kind described on stderr


@dataclass
class Tally:
    tasks: int = 0
    lost: int = 0
    wrong: int = 0
    orphans: int = 0
    spinning: list[str] = field(default_factory=list)
    threads_left: list[str] = field(default_factory=list)
    pools_replaced: int = 0
    shown: dict[str, int] = field(default_factory=dict)

    def note(self, kind: str, text: str) -> None:
        """Describe a problem on stderr, the first few of each kind."""
        count = self.shown.get(kind, 0)
        if count < SHOWN:
            print(f"{kind}: {text}", file=sys.stderr)
        self.shown[kind] = count + 1

    @property
    def clean(self) -> bool:
        return not (self.lost or self.wrong or self.orphans or self.spinning or self.threads_left)


def random_job(rng: random.Random) -> Job:
    """One task of the mix (see the module docstring); cancels are decided apart."""
    draw = rng.random() * 100
    if draw < 1:
        return Job("exit", param=rng.choice((1, 3, 255, 0)))
    if draw < 2:
        return Job("sigkill")
    if draw < 3:
        return Job("sigsegv")
    if draw < 4:
        return Job("hang", timeout=0.05)
    if draw < 7:
        return Job("raise", rng.randrange(1000))
    if draw < 12:
        return Job("busy", rng.randrange(1000), 1)
    return Job("value", rng.randrange(1000))


@dataclass
class Submitted:
    job: Job
    handle: mp.Handle[object]
    cancelled: bool = False


class Soak:
    def __init__(self, engine: str, workers: int, deadline: float, tally: Tally) -> None:
        self.engine = engine
        self.workers = workers
        self.deadline = deadline
        self.tally = tally
        self.numbers = itertools.count()
        self.pool, self.before = self.new_pool()

    def new_pool(self) -> tuple[mp.Pool, dict[int, str]]:
        before = fault_mix.descendants()
        name = f"soak{os.getpid() % 10000}-{next(self.numbers)}"
        return fault_mix.make_pool(self.engine, self.workers, name), before

    def run_wave(self, jobs: list[Job], cancels: set[int], rng: random.Random, watch: bool) -> None:
        wave: list[Submitted] = []
        for index, job in enumerate(jobs):
            wave.append(Submitted(job, fault_mix.submit(self.pool, job)))
            if index in cancels:
                target = wave[-rng.randint(1, min(len(wave), 4 * self.workers + 4))]
                if target.handle.cancel():
                    target.cancelled = True
        self.tally.tasks += len(wave)
        _, unfinished = concurrent.futures.wait([s.handle for s in wave], timeout=self.deadline)
        for submitted in wave:
            if submitted.handle in unfinished:
                self.tally.lost += 1
                state = submitted.handle.state
                self.tally.note("lost", f"{submitted.job} still {state} after {self.deadline} s")
                continue
            outcome = fault_mix.observe(submitted.handle)
            allowed = fault_mix.allowed_outcomes(
                submitted.job, self.engine, cancelled=submitted.cancelled
            )
            if not fault_mix.judge(outcome, allowed):
                self.tally.wrong += 1
                self.tally.note(
                    "wrong",
                    f"{submitted.job}{' (cancelled)' if submitted.cancelled else ''} ended as "
                    f"{outcome}; expected {' or '.join(sorted(map(str, allowed)))}",
                )
        if unfinished or watch:
            self.watch_threads("while tasks were lost" if unfinished else "with nothing to do")
        if unfinished:
            self.close(timeout=0)
            self.tally.pools_replaced += 1
            self.pool, self.before = self.new_pool()

    def watch_threads(self, when: str) -> None:
        for spinning in fault_mix.spinning_threads(self.pool.name):
            self.tally.spinning.append(spinning)
            self.tally.note("spinning", f"{spinning} {when}")

    def close(self, timeout: float | None) -> None:
        """Shut the pool down (giving up on a stuck shutdown) and count what it left."""
        pool = self.pool
        done = run_within(
            self.deadline + GRACE,
            lambda: pool.shutdown(wait=True, cancel_pending=True, timeout=timeout),
        )
        if not done:
            self.tally.note("stuck", f"shutdown of pool {pool.name} did not return")
        left = fault_mix.leftovers(pool.name, self.before, GRACE)
        self.tally.orphans += len(left.processes)
        self.tally.threads_left += left.threads
        for what in left.processes + left.threads:
            self.tally.note("left after shutdown", f"pool {pool.name}: {what}")


def run_within(seconds: float, call: Callable[[], object]) -> bool:
    """Run ``call`` in a thread of its own; whether it returned within ``seconds``."""
    thread = threading.Thread(target=call, name="soak shutdown", daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the task mix")
    parser.add_argument("--start", choices=("spawn", "fork"), default="spawn")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--wave", type=int, default=1000, help="tasks submitted at once")
    parser.add_argument(
        "--deadline", type=float, default=60.0, help="seconds a wave's tasks get to end"
    )
    args = parser.parse_args(argv)
    # thousands of workers die on purpose: keep the pool's errors, not its warnings about that
    logging.getLogger("makeparallel").setLevel(logging.ERROR)

    rng = random.Random(args.seed)
    tally = Tally()
    soak = Soak(args.start, args.workers, args.deadline, tally)
    started = time.monotonic()
    waves = -(-args.tasks // args.wave)
    for number in range(waves):
        size = min(args.wave, args.tasks - number * args.wave)
        jobs = [random_job(rng) for _ in range(size)]
        cancels = {i for i in range(size) if rng.random() < 0.01}
        soak.run_wave(jobs, cancels, rng, watch=number % 10 == 9 or number == waves - 1)
        if waves >= 10 and (number + 1) % (waves // 10) == 0:
            print(
                f"{tally.tasks} tasks in {time.monotonic() - started:.0f} s: lost {tally.lost}, "
                f"wrong {tally.wrong}",
                file=sys.stderr,
            )
    soak.close(timeout=None)

    print(f"{tally.tasks} tasks: lost {tally.lost}, wrong {tally.wrong}, orphans {tally.orphans}")
    threads = (
        f"seen spinning {len(tally.spinning)} times" if tally.spinning else "none seen spinning"
    )
    left = f"{len(tally.threads_left)} left after shutdown" if tally.threads_left else "none left"
    replaced = f"; {tally.pools_replaced} pools replaced after losing tasks"
    print(f"pool threads: {threads}, {left}{replaced if tally.pools_replaced else ''}")
    return 0 if tally.clean else 1


if __name__ == "__main__":
    sys.exit(main())
