"""Randomized fault testing: random sequences of what a program does to a real pool,
each task checked against the one outcome it may have.

A Hypothesis state machine drives a real pool - worker processes started as
fresh interpreters (``start="spawn"``) or forked (``start="fork"``), or threads
- through random sequences of: tasks that succeed, raise, kill their worker
(``os._exit``, SIGKILL, SIGSEGV), hang past their timeout, run a few
milliseconds, or send back a result the parent cannot unpickle; tiny timeouts
that race a quick task's end; cancels of waiting and running tasks, also
right after submitting; maps over items some of which raise; resizes;
callbacks that raise, ``SystemExit`` included; and at the end a shutdown,
with or without ``cancel_pending`` and a deadline. ``fault_mix`` (in
benchmarks/, shared with ``soak.py``) holds the tasks and the model of which
outcomes each may have. Checked:

- every task ends, within a deadline, in exactly one terminal state that the
  model allows: none is lost, and none that nobody cancelled fails because of
  what happened to another task;
- callbacks run once when their event happens, and what they raise ends no
  thread of the pool;
- while a pool has nothing to do, or waits for a hung task, its threads use no CPU;
- after shutdown no thread and no process of the pool is left.

Whatever a step finds is reported at the end of its sequence, so that every
run of a sequence draws the same steps however the pool's threads raced. One
fault often brings others (a dead I/O thread loses tasks, then shutdown
hangs), and after a race the same steps may show another of them: the one
reported is the first in ``FAULT_ORDER``, and to Hypothesis every fault is
the same failure, so it shrinks a sequence for as long as it fails at all and
names the shortest it found. ``MAKEPARALLEL_FAULT_EXAMPLES`` multiplies the
number of sequences tried.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

import makeparallel as mp

# fault_mix lives in benchmarks/; worker processes get this sys.path and import it too
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fault_mix
from fault_mix import Job, Outcome

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
    # A failure is shrunk for up to 5 minutes: give it the time to report.
    pytest.mark.timeout(900),
]

#: a task still unfinished this long after the pool was last asked anything is lost
LOST_AFTER = 10.0
#: so are the tasks still unfinished when none has ended for this long (no task runs longer)
STALLED_AFTER = 3.0
#: after shutdown returns, the pool's threads and processes get this long to go
GRACE = 5.0
WORKERS = 2
EXAMPLES = int(os.environ.get("MAKEPARALLEL_FAULT_EXAMPLES", "1"))

T = TypeVar("T")
_pool_numbers = itertools.count()


# -- what can go wrong -------------------------------------------------------------------------


class Fault(AssertionError):
    """Something a user of the pool would notice went wrong."""


class LostTask(Fault):
    """A task never reached a terminal state."""


class InnocentVictim(Fault):
    """A task nobody cancelled, which would have ended normally, failed."""


class WrongOutcome(Fault):
    """A task ended in a state the model does not allow for it."""


class CallHung(Fault):
    """A call to the pool (a map, shutdown) never returned."""


class WrongMap(Fault):
    """A map yielded the wrong values or error."""


class PoolThreadKilled(Fault):
    """An exception (a callback's SystemExit) ended one of the pool's threads."""


class CallbackMisfired(Fault):
    """A callback did not run once when its event happened."""


class Spinning(Fault):
    """A pool thread used CPU while the pool had nothing to do."""


class LeftBehind(Fault):
    """A thread or process of the pool outlived its shutdown."""


# One fault often brings others (a dead I/O thread loses tasks, then shutdown hangs):
# a sequence reports the first of these it shows, whichever it saw first.
FAULT_ORDER = (
    PoolThreadKilled,
    LostTask,
    CallHung,
    Spinning,
    InnocentVictim,
    WrongOutcome,
    WrongMap,
    CallbackMisfired,
    LeftBehind,
)


# -- the jobs Hypothesis draws ---------------------------------------------------------------

values = st.integers(0, 1000)
quick = st.builds(Job, st.just("value"), values)
busy = st.builds(Job, st.just("busy"), values, st.integers(1, 20))
raising = st.builds(Job, st.just("raise"), values)
hanging = st.builds(Job, st.just("hang"), timeout=st.sampled_from([0.05, 0.1, 0.2]))
racing = st.builds(
    Job, st.just("value"), values, timeout=st.sampled_from([0.0005, 0.001, 0.002, 0.005])
)
unloadable = st.builds(Job, st.just("unloadable"), param=st.sampled_from(["error", "exit"]))
crashing = st.one_of(
    st.builds(Job, st.just("exit"), param=st.sampled_from([3, 1, 0, 255])),
    st.builds(Job, st.just("sigkill")),
    st.builds(Job, st.just("sigsegv")),
)
# quick tasks three times as often as each other kind: they make the engine send work ahead
any_engine_job = st.one_of(quick, quick, quick, busy, raising, racing, hanging, unloadable)
process_job = st.one_of(any_engine_job, any_engine_job, crashing)
cancellable = st.one_of(quick, busy, hanging)
# tasks that run long enough for a callback added right after submitting to run on the pool
callback_job = st.one_of(st.builds(Job, st.just("busy"), values, st.integers(5, 20)), hanging)
callback_kinds = st.sampled_from(["complete", "error", "done"])
callback_errors = st.sampled_from([ValueError, SystemExit])


# -- what is tracked of each task ------------------------------------------------------------


@dataclass
class Tracked:
    job: Job
    handle: mp.Handle[object]
    cancelled: bool = False  # a cancel() returned True
    may_be_cancelled: bool = False  # waiting when shutdown(cancel_pending=True) was called
    may_be_stopped: bool = False  # unfinished when shutdown(timeout=...) was called
    seen: Outcome | None = None  # its terminal state, once seen

    def describe(self) -> str:
        return f"task {self.handle.task_id} ({self.job})"


@dataclass
class Callback:
    """A callback registered on a task; it raises ``error`` when it runs on a pool thread."""

    tracked: Tracked
    on: str  # "complete", "error" or "done" (add_done_callback)
    error: type[BaseException]
    calls: list[str] = field(default_factory=list)  # the threads it ran on
    fired: threading.Event = field(default_factory=threading.Event)

    def should_fire(self, outcome: Outcome) -> bool:
        if self.on == "done":
            return True
        return (outcome.kind == fault_mix.VALUE) == (self.on == "complete")

    def describe(self) -> str:
        return f"{self.on} callback raising {self.error.__name__} of {self.tracked.describe()}"


def call_within(
    seconds: float, what: str, call: Callable[[], T], meanwhile: Callable[[], None] = lambda: None
) -> T:
    """``call()`` in a thread of its own; ``CallHung`` if it has not returned after ``seconds``.

    ``meanwhile()`` is called every 50 ms while it runs, to raise a fault that explains it.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, name=f"fault-model: {what}", daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(0.05)
        meanwhile()
    if thread.is_alive():
        raise CallHung(f"{what} did not return within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def step(method: Callable[..., None]) -> Callable[..., None]:
    """A rule, followed by the checks cheap enough for every step.

    A fault found is kept for teardown to raise; once one is found the rest of
    the sequence only plays out its draws (the pool is known to be broken).
    """

    @functools.wraps(method)
    def run(self: FaultModel, **arguments: Any) -> None:
        if self.faults:
            return
        try:
            method(self, **arguments)
            self.check_finished_tasks()
        except Fault as fault:
            self.faults.append(fault)

    return run


# -- the state machine -----------------------------------------------------------------------


class FaultModel(RuleBasedStateMachine):
    """One pool, random steps, then a shutdown; the model's verdict on every task."""

    engine = "spawn"

    def __init__(self) -> None:
        super().__init__()
        self.before = fault_mix.descendants()
        self.pool = fault_mix.make_pool(
            self.engine, WORKERS, f"fm{os.getpid() % 10000}-{next(_pool_numbers)}"
        )
        self.tracked: list[Tracked] = []
        self.callbacks: list[Callback] = []
        self.shutdown_with: dict[str, Any] = {"cancel_pending": False, "timeout": None}
        self.faults: list[Fault] = []
        # An exception that ends one of the pool's threads is noted here; other
        # threads' go to the hook that was there.
        self.escaped: list[str] = []
        self.previous_hook = threading.excepthook
        threading.excepthook = self.note_escape

    def note_escape(self, about: threading.ExceptHookArgs) -> None:
        if about.thread is not None and about.thread.name.startswith(f"{self.pool.name}-"):
            self.escaped.append(f"{about.exc_type.__name__} ended thread {about.thread.name!r}")
        else:
            self.previous_hook(about)

    @initialize(cancel_pending=st.booleans(), timeout=st.sampled_from([None, 0.0, 0.05, 0.3]))
    def end_with(self, cancel_pending: bool, timeout: float | None) -> None:
        """How the sequence ends: ``shutdown(cancel_pending=..., timeout=...)``."""
        self.shutdown_with = {"cancel_pending": cancel_pending, "timeout": timeout}

    # -- submitting

    def track(self, job: Job) -> Tracked:
        tracked = Tracked(job, fault_mix.submit(self.pool, job))
        self.tracked.append(tracked)
        return tracked

    @rule(jobs=st.lists(any_engine_job, min_size=1, max_size=10))
    @step
    def submit(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.track(job)

    @rule(count=st.integers(10, 150))
    @step
    def flood(self, count: int) -> None:
        """Many tasks that return at once: the engine queues them behind running ones."""
        for value in range(count):
            self.track(Job("value", value))

    # -- cancelling

    def cancel(self, tracked: Tracked) -> None:
        if tracked.handle.cancel():
            tracked.cancelled = True
            if not tracked.handle.cancelled():
                raise WrongOutcome(
                    f"cancel() of {tracked.describe()} returned True, but its state is "
                    f"{tracked.handle.state}"
                )

    @precondition(lambda self: self.tracked)
    @rule(back=st.integers(1, 64))
    @step
    def cancel_one(self, back: int) -> None:
        """Cancel a recent task, waiting, running or done."""
        self.cancel(self.tracked[-min(back, len(self.tracked))])

    @rule(jobs=st.lists(cancellable, min_size=1, max_size=10))
    @step
    def submit_and_cancel(self, jobs: list[Job]) -> None:
        """A cancel loop: each task is cancelled right after it is submitted."""
        for job in jobs:
            self.cancel(self.track(job))

    @rule(rounds=st.integers(1, 30))
    @step
    def cancel_races_the_end(self, rounds: int) -> None:
        """Again and again, cancel a quick task while it may be ending, others queued behind it."""
        for _ in range(rounds):
            batch = [self.track(Job("value", value)) for value in range(4)]
            self.cancel(batch[0])

    @rule(rounds=st.integers(1, 30), timeout=st.sampled_from([0.0005, 0.001, 0.002]))
    @step
    def timeout_races_the_end(self, rounds: int, timeout: float) -> None:
        """Again and again, a quick task whose tiny timeout may fire as it ends, more behind it."""
        for _ in range(rounds):
            self.track(Job("value", 0, timeout=timeout))
            for value in range(3):
                self.track(Job("value", value))

    # -- maps, sizes, callbacks

    @rule(
        items=st.lists(st.integers(-3, 40), max_size=30),
        how=st.sampled_from(["map", "imap", "imap unordered"]),
    )
    @step
    def run_map(self, items: list[int], how: str) -> None:
        """A map over items of which the negative ones raise, read to its end or its error."""
        if how == "map":
            results = self.pool.map(fault_mix.map_item, items)
        else:
            results = self.pool.imap(fault_mix.map_item, items, ordered=how == "imap")

        def read() -> tuple[list[int], BaseException | None]:
            values: list[int] = []
            try:
                for value in results:
                    values.append(value)
            except Exception as error:
                return values, error
            return values, None

        values, error = call_within(
            LOST_AFTER, f"{how} over {items}", read, self.check_threads_survive
        )
        problem = fault_mix.check_map(items, values, error, ordered=how != "imap unordered")
        if problem is not None:
            raise WrongMap(f"{how} over {items}: {problem}")

    @rule(workers=st.integers(1, 3))
    @step
    def resize(self, workers: int) -> None:
        self.pool.resize(workers)

    def add_callback(self, tracked: Tracked, on: str, error: type[BaseException]) -> None:
        """A callback that raises ``error`` when it runs on one of the pool's threads.

        On the caller's own thread (a callback added to a finished task, or run by
        a cancel() from here) it does not raise: a SystemExit there would end the
        caller, as with any Future; what is tested is what it does to the pool.
        """
        callback = Callback(tracked, on, error)
        prefix = f"{self.pool.name}-"

        def called(_: object) -> None:
            callback.calls.append(threading.current_thread().name)
            callback.fired.set()
            if threading.current_thread().name.startswith(prefix):
                raise error("raised by a callback on purpose")

        self.callbacks.append(callback)
        if on == "complete":
            tracked.handle.on_complete(called)
        elif on == "error":
            tracked.handle.on_error(called)
        else:
            tracked.handle.add_done_callback(called)

    @rule(job=callback_job, on=callback_kinds, error=callback_errors)
    @step
    def submit_with_callback(self, job: Job, on: str, error: type[BaseException]) -> None:
        """A task that runs a while, and a callback added at once (so it runs on the pool)."""
        self.add_callback(self.track(job), on, error)

    @precondition(lambda self: self.tracked)
    @rule(back=st.integers(1, 64), on=callback_kinds)
    @step
    def add_late_callback(self, back: int, on: str) -> None:
        """A callback added to a recent task, which may have ended already.

        It raises a ValueError: whether it runs on the pool depends on a race,
        and the rules above are what make a SystemExit run there reproducibly.
        """
        self.add_callback(self.tracked[-min(back, len(self.tracked))], on, ValueError)

    # -- waiting

    @rule(blocked=st.booleans())
    @step
    def wait_idle(self, blocked: bool) -> None:
        """Once every task has ended, the pool's threads use no CPU, also while a task hangs."""
        self.check_every_task_ends()
        if blocked:
            self.track(Job("hang", timeout=0.3))
        spinning = fault_mix.spinning_threads(self.pool.name)
        if spinning:
            raise Spinning(
                f"threads of pool {self.pool.name} spin while it "
                f"{'waits for a hung task' if blocked else 'has nothing to do'}: {spinning}"
            )

    # -- the checks

    def check_threads_survive(self) -> None:
        if self.escaped:
            raise PoolThreadKilled(f"pool {self.pool.name}: {self.escaped}")

    def check_finished_tasks(self) -> None:
        self.check_threads_survive()
        for tracked in self.tracked:
            if tracked.handle.done():
                self.check(tracked)

    def check(self, tracked: Tracked) -> None:
        outcome = fault_mix.observe(tracked.handle)
        if tracked.seen is not None:
            if outcome != tracked.seen:
                raise WrongOutcome(
                    f"{tracked.describe()} ended as {tracked.seen}, later as {outcome}"
                )
            return
        allowed = fault_mix.allowed_outcomes(
            tracked.job,
            self.engine,
            cancelled=tracked.cancelled,
            may_be_cancelled=tracked.may_be_cancelled,
            may_be_stopped=tracked.may_be_stopped,
        )
        if not fault_mix.judge(outcome, allowed):
            normal = fault_mix.normal_outcomes(tracked.job, self.engine)
            untouched = not (
                tracked.cancelled or tracked.may_be_cancelled or tracked.may_be_stopped
            )
            innocent = untouched and all(
                o.kind in (fault_mix.VALUE, fault_mix.RAISED) for o in normal
            )
            raise (InnocentVictim if innocent else WrongOutcome)(
                f"{tracked.describe()} ended as {outcome}; expected "
                f"{' or '.join(sorted(map(str, allowed)))}"
                + (" (its cancel() returned True)" if tracked.cancelled else "")
            )
        tracked.seen = outcome

    def check_every_task_ends(self) -> None:
        self.check_threads_survive()
        lost = self.lost_tasks(LOST_AFTER)
        if lost is not None:
            raise lost
        for tracked in self.tracked:
            self.check(tracked)

    def lost_tasks(self, seconds: float) -> LostTask | None:
        """Wait up to ``seconds`` for every task to end; less if none ends for
        ``STALLED_AFTER`` seconds, or if a pool thread dies."""
        unfinished = {t.handle for t in self.tracked}
        started = progress = time.monotonic()
        while unfinished and not self.escaped:
            now = time.monotonic()
            if now - started >= seconds or now - progress >= STALLED_AFTER:
                break
            done, unfinished = concurrent.futures.wait(unfinished, timeout=0.05)
            if done:
                progress = time.monotonic()
        if not unfinished:
            return None
        lost = [t for t in self.tracked if t.handle in unfinished]
        spinning = fault_mix.spinning_threads(self.pool.name)
        return LostTask(
            f"{len(lost)} of {len(self.tracked)} tasks of pool {self.pool.name} are "
            f"unfinished after {time.monotonic() - started:.1f} s, none ended in the last "
            f"{time.monotonic() - progress:.1f} s: "
            + "; ".join(f"{t.describe()}, {t.handle.state}" for t in lost[:5])
            + (f"; meanwhile these threads spin: {spinning}" if spinning else "")
        )

    def check_callbacks(self) -> None:
        for callback in self.callbacks:
            outcome = callback.tracked.seen
            assert outcome is not None
            if callback.should_fire(outcome):
                callback.fired.wait(GRACE)  # it runs just after the task has ended
                right = len(callback.calls) == 1
            else:
                right = not callback.calls
            if not right:
                raise CallbackMisfired(
                    f"the {callback.describe()} ran {len(callback.calls)} times "
                    f"({callback.calls}); the task ended as {outcome}"
                )

    # -- the end of every sequence

    def teardown(self) -> None:
        try:
            if not self.faults:
                try:
                    self.shut_down(**self.shutdown_with)
                except Fault as fault:
                    self.faults.append(fault)
            if self.faults:
                self.report()
        finally:
            threading.excepthook = self.previous_hook

    def report(self) -> None:
        """Note every other fault there is to see, let the pool go as far as it still
        can, and raise the fault that comes first in ``FAULT_ORDER``."""
        waited = any(isinstance(fault, LostTask) for fault in self.faults)
        lost = self.lost_tasks(0 if waited else LOST_AFTER)
        if self.escaped:
            self.faults.append(PoolThreadKilled(f"pool {self.pool.name}: {self.escaped}"))
        if lost is not None and not waited:
            self.faults.append(lost)
        for tracked in self.tracked:
            if tracked.handle.done():
                try:
                    self.check(tracked)
                except Fault as fault:
                    self.faults.append(fault)
        try:
            call_within(
                2.0,
                "shutdown after a fault",
                lambda: self.pool.shutdown(wait=True, cancel_pending=True, timeout=0),
            )
        except CallHung:
            pass
        first = min(self.faults, key=lambda fault: FAULT_ORDER.index(type(fault)))
        others = sorted({type(fault).__name__ for fault in self.faults} - {type(first).__name__})
        also = f" (also seen: {', '.join(others)})" if others else ""
        raise Fault(f"{type(first).__name__}: {first}{also}")

    def shut_down(self, cancel_pending: bool, timeout: float | None) -> None:
        for tracked in self.tracked:
            if tracked.handle.done():
                continue
            if cancel_pending and tracked.handle.state is mp.TaskState.PENDING:
                tracked.may_be_cancelled = True
            if timeout is not None:
                tracked.may_be_stopped = True
        what = f"shutdown(cancel_pending={cancel_pending}, timeout={timeout})"
        call_within(
            LOST_AFTER + (timeout or 0),
            what,
            lambda: self.pool.shutdown(wait=True, cancel_pending=cancel_pending, timeout=timeout),
            self.check_threads_survive,
        )
        self.check_every_task_ends()
        self.check_callbacks()
        left = fault_mix.leftovers(self.pool.name, self.before, GRACE)
        if left:
            raise LeftBehind(f"after {what} of pool {self.pool.name}, still there: {left}")
        self.check_threads_survive()
        with pytest.raises(RuntimeError, match="shut down"):
            fault_mix.submit(self.pool, Job("value", 1))


class ProcessFaultModel(FaultModel):
    """The process engine also runs tasks that kill their own worker."""

    @rule(jobs=st.lists(process_job, min_size=1, max_size=10))
    @step
    def submit_with_crashes(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.track(job)

    @rule(job=crashing, count=st.integers(10, 100))
    @step
    def crash_amid_quick_tasks(self, job: Job, count: int) -> None:
        """A crash with quick tasks before it and after it (queued behind it on its worker)."""
        for value in range(count):
            self.track(Job("value", value))
        self.track(job)
        for value in range(count):
            self.track(Job("value", value))

    @rule(job=crashing, on=callback_kinds, error=callback_errors)
    @step
    def submit_crash_with_callback(self, job: Job, on: str, error: type[BaseException]) -> None:
        """A task that kills its worker, and a callback for the pool to run when it hears of it."""
        self.add_callback(self.track(job), on, error)


class SpawnPool(ProcessFaultModel):
    engine = "spawn"


class ForkPool(ProcessFaultModel):
    engine = "fork"


class ThreadPool(FaultModel):
    engine = "thread"


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples * EXAMPLES,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


TestSpawnPool = SpawnPool.TestCase
TestSpawnPool.settings = _settings(10)
TestForkPool = ForkPool.TestCase
TestForkPool.settings = _settings(10)
TestThreadPool = ThreadPool.TestCase
TestThreadPool.settings = _settings(10)
