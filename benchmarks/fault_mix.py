"""A mix of tasks that succeed, raise, crash, hang or send back an unloadable result;
the one outcome each may end with; and how to look at a pool from outside.

``tests/test_fault_model.py`` (a stateful property-based test) and ``soak.py``
(a long randomized run) both use it, so what counts as right is written once:

- a task that returns ends with its value, one that raises with its own
  exception type, one that kills its worker (``os._exit``, SIGKILL, SIGSEGV)
  with ``WorkerCrashedError``, one that hangs past its ``timeout`` with
  ``TaskTimeoutError`` and the state ``"timed_out"``, one whose result cannot
  be unpickled in the parent with ``SerializationError`` (or another
  ``TaskError``);
- a task whose ``cancel()`` returned True is cancelled; any other task ends
  as above, whatever happened to the tasks around it;
- ``shutdown(cancel_pending=True)`` may cancel the tasks still waiting, and
  ``shutdown(timeout=...)`` may stop the ones still running with a ``TaskError``.

Worker processes import this module by name to run ``perform``: its directory
must be on ``sys.path`` when the pool starts (it is for a script in it).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import makeparallel as mp

#: the ways of starting a pool that the mix runs on
ENGINES = ("spawn", "fork", "thread")
#: the ways a task kills its own worker process
CRASHES = ("exit", "sigkill", "sigsegv")
#: a hanging task gives up after this many seconds, so nothing hangs for ever
HANG_LIMIT = 30.0
#: a thread using more than this share of the time while its pool waits is spinning
SPIN_SHARE = 0.25

_TICK = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


# -- the tasks (run in workers) --------------------------------------------------------------


class FaultMixError(Exception):
    """The user's own exception type, raised by ``raise`` tasks and failing map items."""


class Unloadable:
    """A result that pickles in the worker but raises when the parent unpickles it."""

    def __init__(self, error: str) -> None:
        self.error = error  # "exit": SystemExit on load; anything else: LookupError

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_fail_to_load, (self.error,))


def _fail_to_load(error: str) -> None:
    if error == "exit":
        raise SystemExit(3)
    raise LookupError("this result cannot be loaded")


def perform(kind: str, value: int, param: object) -> object:
    """Do what a job of this kind does (see ``Job``)."""
    if kind == "value":
        return value
    if kind == "busy":
        time.sleep(float(param) / 1000)  # type: ignore[arg-type]
        return value
    if kind == "raise":
        raise FaultMixError(value)
    if kind == "exit":
        os._exit(int(param))  # type: ignore[call-overload]
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "sigsegv":
        import ctypes

        ctypes.string_at(0)  # a real segmentation fault
    if kind == "hang":
        return _hang()
    if kind == "unloadable":
        return Unloadable(str(param))
    raise ValueError(f"unknown job kind {kind!r}")


def _hang() -> str:
    """Run until the task is cancelled (threads are told so) or killed (processes)."""
    task = mp.current_task()
    end = time.monotonic() + HANG_LIMIT
    while time.monotonic() < end:
        if task is not None and task.cancelled():
            return "stopped hanging when told"
        time.sleep(0.002)
    return f"hung for {HANG_LIMIT:g} s and nobody stopped it"


def map_item(x: int) -> int:
    """A map's function: the square of ``x``; a negative ``x`` raises ``FaultMixError(x)``."""
    if x < 0:
        raise FaultMixError(x)
    return x * x


# -- jobs and their outcomes -----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One task of the mix.

    ``kind``: ``"value"`` (returns ``value`` at once), ``"busy"`` (sleeps
    ``param`` ms, then returns ``value``), ``"raise"`` (``FaultMixError(value)``),
    ``"exit"`` (``os._exit(param)``), ``"sigkill"``, ``"sigsegv"``, ``"hang"``
    (until stopped; give it a ``timeout``) or ``"unloadable"`` (returns an
    ``Unloadable(param)``). ``timeout``: the task's ``timeout=`` option.
    """

    kind: str
    value: int = 0
    param: object = None
    timeout: float | None = None

    def __str__(self) -> str:
        what = {
            "value": f"returns {self.value}",
            "busy": f"sleeps {self.param} ms, returns {self.value}",
            "raise": f"raises FaultMixError({self.value})",
            "exit": f"calls os._exit({self.param})",
            "sigkill": "sends itself SIGKILL",
            "sigsegv": "dereferences a null pointer",
            "hang": "hangs",
            "unloadable": f"returns a result that raises "
            f"{'SystemExit' if self.param == 'exit' else 'LookupError'} when unpickled",
        }[self.kind]
        return what if self.timeout is None else f"{what}, timeout={self.timeout:g}"


def submit(pool: mp.Pool, job: Job) -> mp.Handle[object]:
    """Submit ``job`` to ``pool`` (with its timeout, through ``@parallel`` options)."""
    if job.timeout is None:
        return pool.submit(perform, job.kind, job.value, job.param)
    return _perform.options(pool=pool, timeout=job.timeout)(job.kind, job.value, job.param)


_perform = mp.parallel(perform)

VALUE = "value"
RAISED = "raised"
CRASHED = "crashed"
TIMED_OUT = "timed out"
CANCELLED = "cancelled"
UNSERIALIZABLE = "unserializable"
STOPPED = "stopped"  # a TaskError of no more precise kind (e.g. stopped at a shutdown deadline)
OTHER = "other"
INCONSISTENT = "inconsistent"

_STATE_OF = {
    VALUE: "succeeded",
    CANCELLED: "cancelled",
    TIMED_OUT: "timed_out",
}


@dataclass(frozen=True)
class Outcome:
    """How a task ended, as a user tells it apart: ``kind`` and, for a value or
    the user's exception, which one (``detail``)."""

    kind: str
    detail: object = None
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        if self.text:
            return f"{self.kind} ({self.text})"
        return self.kind if self.detail is None else f"{self.kind} {self.detail!r}"


def observe(handle: concurrent.futures.Future[object]) -> Outcome:
    """How a finished handle ended; ``INCONSISTENT`` if its state and its Future disagree."""
    assert handle.done()
    if handle.cancelled():
        outcome = Outcome(CANCELLED)
    else:
        error = handle.exception(timeout=0)
        outcome = _classify(handle, error)
    state = str(getattr(handle, "state", ""))
    expected_state = _STATE_OF.get(outcome.kind, "failed")
    if state != expected_state:
        return Outcome(INCONSISTENT, text=f"{outcome}, but its state is {state!r}")
    return outcome


def _classify(handle: concurrent.futures.Future[object], error: BaseException | None) -> Outcome:
    if error is None:
        value = handle.result(timeout=0)
        return Outcome(VALUE, "unloadable" if isinstance(value, Unloadable) else value)
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, FaultMixError):
        return Outcome(RAISED, error.args[0] if error.args else None)
    if isinstance(error, mp.TaskTimeoutError):
        return Outcome(TIMED_OUT, text=text)
    if isinstance(error, mp.TaskCancelledError):
        return Outcome(OTHER, text=f"{text} (a cancellation error on a handle not cancelled)")
    if isinstance(error, mp.WorkerCrashedError):
        return Outcome(CRASHED, text=text)
    if isinstance(error, mp.SerializationError):
        return Outcome(UNSERIALIZABLE, text=text)
    if isinstance(error, mp.TaskError):
        return Outcome(STOPPED, text=text)
    return Outcome(OTHER, text=text)


def normal_outcomes(job: Job, engine: str) -> frozenset[Outcome]:
    """What ``job`` may end with on ``engine`` when nobody cancels it or shuts its pool down."""
    processes = engine != "thread"
    if job.kind in ("value", "busy"):
        usual = {Outcome(VALUE, job.value)}
    elif job.kind == "raise":
        usual = {Outcome(RAISED, job.value)}
    elif job.kind in CRASHES:
        if not processes:
            raise ValueError(f"a {job.kind} job kills its process: it needs the process engine")
        usual = {Outcome(CRASHED)}
    elif job.kind == "hang":
        if job.timeout is None:
            raise ValueError("a hang job needs a timeout")
        return frozenset({Outcome(TIMED_OUT)})
    elif job.kind == "unloadable":
        if processes:
            usual = {Outcome(UNSERIALIZABLE), Outcome(STOPPED)}
        else:
            usual = {Outcome(VALUE, "unloadable")}
    else:
        raise ValueError(f"unknown job kind {job.kind!r}")
    if job.timeout is not None:
        usual.add(Outcome(TIMED_OUT))  # its deadline may come first
    return frozenset(usual)


def allowed_outcomes(
    job: Job,
    engine: str,
    *,
    cancelled: bool = False,
    may_be_cancelled: bool = False,
    may_be_stopped: bool = False,
) -> frozenset[Outcome]:
    """What ``job`` may end with.

    ``cancelled``: a ``cancel()`` of it returned True. ``may_be_cancelled``: it
    was still waiting when ``shutdown(cancel_pending=True)`` was called.
    ``may_be_stopped``: it had not ended when ``shutdown(timeout=...)`` was called.
    """
    if cancelled:
        return frozenset({Outcome(CANCELLED)})
    allowed = set(normal_outcomes(job, engine))
    if may_be_cancelled or may_be_stopped:
        allowed.add(Outcome(CANCELLED))
    if may_be_stopped:
        allowed.add(Outcome(STOPPED))
    return frozenset(allowed)


def judge(outcome: Outcome, allowed: Iterable[Outcome]) -> bool:
    """Whether ``outcome`` is one of ``allowed`` (a detail of None there matches any)."""
    return any(
        outcome.kind == a.kind and (a.detail is None or a.detail == outcome.detail) for a in allowed
    )


def check_map(
    items: Sequence[int], values: Sequence[int], error: BaseException | None, ordered: bool
) -> str | None:
    """What is wrong with a map of ``map_item`` over ``items`` that yielded ``values``
    and then raised ``error`` (None: it ran to the end); None if nothing is."""
    failing = [x for x in items if x < 0]
    if ordered:
        first = next((i for i, x in enumerate(items) if x < 0), len(items))
        want = [x * x for x in items[:first]]
        if list(values) != want:
            ending = "" if error is None else f", then raised {error!r}"
            return f"the map yielded {list(values)}{ending}; expected {want} first"
    else:
        squares = sorted(x * x for x in items if x >= 0)
        leftover = list(squares)
        for value in values:
            if value not in leftover:
                return f"the unordered map yielded {value!r}, not the square of an item left"
            leftover.remove(value)
        if not failing and leftover:
            return f"the unordered map never yielded {leftover}"
    if not failing:
        return None if error is None else f"the map raised {error!r}, but no item fails"
    if not isinstance(error, FaultMixError):
        return f"the map should raise FaultMixError for one of {failing}, raised {error!r}"
    if ordered and error.args != (failing[0],):
        return f"the map should raise FaultMixError({failing[0]}) first, raised {error!r}"
    if error.args[0] not in failing:
        return f"the map raised {error!r}, for none of its failing items {failing}"
    return None


# -- the pool, as seen from outside ---------------------------------------------------------


def make_pool(engine: str, workers: int, name: str) -> mp.Pool:
    """A pool of ``workers`` on ``engine`` (one of ``ENGINES``)."""
    if engine == "thread":
        return mp.Pool(workers=workers, backend="thread", name=name)
    return mp.Pool(workers=workers, backend="process", name=name, start=engine)


def descendants() -> dict[int, str]:
    """Every process descended from this one, zombies included: ``{pid: "comm (state)"}``."""
    parents: dict[int, list[int]] = {}
    about: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # it ended meanwhile
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        parents.setdefault(int(fields[1]), []).append(pid)
        about[pid] = f"{comm} ({fields[0]})"
    found: dict[int, str] = {}
    todo = list(parents.get(os.getpid(), ()))
    while todo:
        pid = todo.pop()
        found[pid] = about[pid]
        todo += parents.get(pid, ())
    return found


def named_processes(pool_name: str) -> dict[int, str]:
    """Processes anywhere whose name says they belong to ``pool_name``.

    Workers name themselves after their pool, as ``ps`` and ``top`` show: in
    their 15-character name, and in their command line where setproctitle is
    installed. This finds those that are no longer this process's descendants.
    """
    prefix = f"{pool_name}-"[:15]  # Linux keeps 15 characters of a process's name
    title = f"{pool_name}-".encode()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm.startswith(prefix) or title in command:
            found[int(entry)] = f"{comm} ({stat[stat.rindex(')') + 2]})"
    return found


def pool_threads(pool_name: str) -> list[threading.Thread]:
    """This process's threads that are named after the pool."""
    return [t for t in threading.enumerate() if t.name.startswith(f"{pool_name}-")]


@dataclass(frozen=True)
class Leftovers:
    threads: list[str]
    processes: list[str]

    def __bool__(self) -> bool:
        return bool(self.threads or self.processes)

    def __str__(self) -> str:
        return ", ".join(self.threads + self.processes)


def leftovers(pool_name: str, before: Iterable[int], grace: float) -> Leftovers:
    """What a shut-down pool left behind, after at most ``grace`` seconds: its threads
    still alive, and processes that were not descendants of this process ``before``
    it started, or that are named after it."""
    known = set(before)
    deadline = time.monotonic() + grace
    for thread in pool_threads(pool_name):
        thread.join(max(0.0, deadline - time.monotonic()))
    while True:
        processes = {
            pid: what for pid, what in descendants().items() if pid not in known
        } | named_processes(pool_name)
        if not processes or time.monotonic() >= deadline:
            break
        time.sleep(0.01)  # processes cannot be waited for here: they are not ours to reap
    return Leftovers(
        [f"thread {t.name!r}" for t in pool_threads(pool_name)],
        [f"process {pid} {what}" for pid, what in sorted(processes.items())],
    )


def _thread_cpu(thread: threading.Thread) -> float | None:
    """CPU seconds (user + system) ``thread`` has used; None if it has ended."""
    try:
        with open(f"/proc/self/task/{thread.native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) * _TICK


def spinning_threads(pool_name: str, seconds: float = 0.2) -> list[str]:
    """The pool's threads that used more than ``SPIN_SHARE`` of a CPU over ``seconds``
    (call it while the pool has nothing to do, or waits for a hung task)."""
    threads = pool_threads(pool_name)
    before = {t: _thread_cpu(t) for t in threads}
    started = time.monotonic()
    time.sleep(seconds)  # the window the CPU time is measured over
    window = time.monotonic() - started
    spinning = []
    for thread, used_before in before.items():
        used_after = _thread_cpu(thread)
        if used_before is None or used_after is None:
            continue
        used = used_after - used_before
        if used > SPIN_SHARE * window:
            spinning.append(f"{thread.name!r} used {used:.2f} s of CPU in {window:.2f} s")
    return spinning
