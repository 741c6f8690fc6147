"""``mp.profile()``: where the time of the tasks run in a block went, and what to do about it.

    with mp.profile() as report:      sampling.start(report): from now on each task
        ...                           submitted is timed (observe.sampling)
    print(report)                     per function: queued, arguments, transit,
                                      running, returning; efficiency; advice

A task's trip has five phases. *queued*: in the pool's queue until handed to
a worker. *arguments*: pickling them in the submitting thread, and (process
workers) unpickling the task in the worker. *transit*: handed out until the
worker began it, and from its end until the parent had the answer (what
neither side measured: the socket, waking up, waiting behind tasks sent
ahead). *running*: the function itself, as the worker measured it.
*returning*: pickling the result in the worker and unpickling it in the parent.

Only tasks submitted inside the block and ended with an answer inside it
are counted; a task stopped by a timeout or a cancel is not. The advice is
decided from the numbers (``advise``), then printed: a value, not a side effect.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, replace
from types import TracebackType
from typing import Any

from .._sizing import usable_cpus
from . import sampling

PHASES = ("queued", "arguments", "transit", "running", "returning")
ENOUGH_TASKS = 10  # fewer tasks than this: too few to advise on their cost
IDLE_ADVICE = 0.5  # workers idle more than this share of the block: say so


@dataclass
class FunctionProfile:
    """The tasks of one function in a profile: counts and total seconds per phase."""

    tasks: int = 0  # tasks that ended with an answer (a map's chunk is one task)
    calls: int = 0  # calls of the function (a chunk of n items is n calls)
    chunked: bool = False  # its tasks were map chunks (parallel_map, imap)
    queued: float = 0.0
    arguments: float = 0.0
    transit: float = 0.0
    running: float = 0.0
    returning: float = 0.0

    @property
    def shipping(self) -> float:
        """Seconds spent moving this function's tasks rather than queueing or running them."""
        return self.arguments + self.transit + self.returning

    @property
    def running_share(self) -> float:
        """Of what the tasks cost (queueing apart), the share spent running the function."""
        spent = self.running + self.shipping
        return self.running / spent if spent > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["running_share"] = self.running_share
        return data


class Profile:
    """What ``mp.profile()`` returns: filled while the block runs, final once it ends.

    ``wall`` (seconds the block took), ``cores`` (usable here), ``efficiency``
    (task running time / (wall x cores)), ``functions`` (name ->
    ``FunctionProfile``), ``advice`` (plain-language lines); ``to_dict()`` for
    JSON; ``str(report)`` is the printed table.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._functions: dict[str, FunctionProfile] = {}
        self.cores = usable_cpus()
        self._began = 0.0
        self._ended: float | None = None

    # -- the block -------------------------------------------------------------------

    def __enter__(self) -> Profile:
        self._began = time.perf_counter()
        self._ended = None
        sampling.start(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        sampling.stop(self)
        self._ended = time.perf_counter()

    def add(self, function: str, chunked: bool, calls: int, phases: tuple[float, ...]) -> None:
        """One task ended (``sampling.finished``, on whichever thread reported it)."""
        with self._lock:
            row = self._functions.get(function)
            if row is None:
                row = self._functions[function] = FunctionProfile(chunked=chunked)
            row.tasks += 1
            row.calls += calls
            for phase, seconds in zip(PHASES, phases, strict=True):
                setattr(row, phase, getattr(row, phase) + seconds)

    # -- the numbers -----------------------------------------------------------------

    @property
    def wall(self) -> float:
        """Seconds the block took (so far, while it runs)."""
        end = self._ended if self._ended is not None else time.perf_counter()
        return end - self._began

    @property
    def functions(self) -> dict[str, FunctionProfile]:
        with self._lock:
            return {name: replace(row) for name, row in self._functions.items()}

    @property
    def tasks(self) -> int:
        return sum(row.tasks for row in self.functions.values())

    @property
    def running(self) -> float:
        return sum(row.running for row in self.functions.values())

    @property
    def efficiency(self) -> float:
        """Task running time over what the usable cores could have run in the block."""
        capacity = self.wall * self.cores
        return min(1.0, self.running / capacity) if capacity > 0 else 0.0

    @property
    def advice(self) -> list[str]:
        return advise(self.functions, self.efficiency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "wall": self.wall,
            "cores": self.cores,
            "tasks": self.tasks,
            "efficiency": self.efficiency,
            "functions": {name: row.to_dict() for name, row in self.functions.items()},
            "advice": self.advice,
        }

    def __str__(self) -> str:
        return render(self.functions, self.wall, self.cores, self.efficiency, self.advice)

    def __repr__(self) -> str:
        return f"<Profile {self.tasks} tasks, {self.wall:.3f} s, efficiency {self.efficiency:.0%}>"


def profile() -> Profile:
    """Time every task submitted in a ``with`` block: ``with mp.profile() as report: ...``.

    Then ``print(report)`` shows, per function, where the tasks' time went
    (queued, pickling arguments, in transit, running, returning results), how
    well the cores were used, and advice when overhead dominates. Costs
    nothing while no profile is active.
    """
    return Profile()


# -- deciding, then saying -----------------------------------------------------------


def advise(functions: dict[str, FunctionProfile], efficiency: float) -> list[str]:
    """Plain-language advice from the numbers; empty when nothing stands out."""
    lines = []
    for name, row in functions.items():
        if row.tasks < ENOUGH_TASKS or row.shipping <= row.running:
            continue
        short = name.rpartition(".")[2]
        run, ship = row.running / row.tasks, row.shipping / row.tasks
        if row.chunked:
            lines.append(
                f"chunks of {short} take {duration(run)} and cost {duration(ship)} to ship: "
                "pass a larger chunksize to parallel_map"
            )
        else:
            lines.append(
                f"tasks of {short} take {duration(run)} and cost {duration(ship)} to ship: "
                "use parallel_map, which batches them"
            )
    if lines or not functions:
        return lines  # (shipping explains idle workers already)
    tasks = sum(row.tasks for row in functions.values())
    queued = sum(row.queued for row in functions.values())
    running = sum(row.running for row in functions.values())
    idle = 1.0 - efficiency
    if idle > IDLE_ADVICE and queued <= running:
        # Tasks hardly waited for a worker, yet the workers were mostly idle: they
        # were not given work fast enough.
        lines.append(
            f"workers idle {idle:.0%}: the producer is the bottleneck "
            f"({tasks} tasks, queued {duration(queued / tasks)} on average); "
            "submit work sooner, or hand the pool the whole iterable with parallel_map"
        )
    return lines


def duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def render(
    functions: dict[str, FunctionProfile],
    wall: float,
    cores: int,
    efficiency: float,
    advice: list[str],
) -> str:
    tasks = sum(row.tasks for row in functions.values())
    lines = [
        f"makeparallel profile: {duration(wall)} wall, {cores} usable cores, "
        f"{tasks} tasks, efficiency {efficiency:.0%}"
    ]
    if not functions:
        lines.append("no makeparallel tasks ended in this block")
        return "\n".join(lines)
    width = max(10, *(len(name) for name in functions))
    header = f"{'function':<{width}}  {'tasks':>7}  {'calls':>7}"
    lines.append(header + "".join(f"  {phase:>10}" for phase in PHASES))
    for name, row in sorted(functions.items(), key=lambda item: -item[1].running):
        totals = [getattr(row, phase) for phase in PHASES]
        lines.append(
            f"{name:<{width}}  {row.tasks:>7}  {row.calls:>7}"
            + "".join(f"  {duration(s):>10}" for s in totals)
        )
        lines.append(
            f"{'  per task':<{width}}  {'':>7}  {'':>7}"
            + "".join(f"  {duration(s / row.tasks):>10}" for s in totals)
        )
        share = row.running_share
        lines.append(
            f"{'  cost':<{width}}  running {share:.0%}, shipping {1 - share:.0%} "
            "(arguments, transit, returning; queueing apart)"
        )
    lines.append("(totals are summed over tasks, which overlap in time)")
    lines += [f"advice: {line}" for line in advice]
    return "\n".join(lines)
