"""makeparallel against serial Python and its peers, on one machine, in one run.

    python benchmarks/run.py [--quick] [--out benchmarks/results/latest.json]

Benchmark "cpu": 8 tasks of about 0.1 s of pure-Python arithmetic each (the
loop count is calibrated at start on this machine). Every contender runs the
same 8 tasks on pools of N = usable CPUs workers. The run goes in rounds (5,
or 2 with --quick); each round times every contender once, so slow drifts of
the machine hit all of them alike. Each figure is the median over the rounds
(with min and max). Each row gets two speed-ups:

- work/wall: every task reads ``time.thread_time()`` around its loop
  (``workloads.spin_timed``), in the process and thread that ran it; per
  repetition, the sum of the tasks' CPU seconds divided by the repetition's
  wall seconds. Process-to-process speed differences cancel out (a slow
  worker's tasks take more CPU seconds and more wall seconds alike), and the
  figure cannot exceed the number of workers.
- vs serial (raw): the serial median of this same run divided by the
  contender's median. The serial loop and every pool get new processes each
  round, but the speed of one pure-Python loop can differ by several percent
  (up to ~14% on some machines) from one process to the next, so this ratio
  can land above the number of workers.

"warm" rows create the pool (and start every worker with one short task per
worker) before timing; "cold" rows time pool creation + the tasks + shutdown.
makeparallel 0.2.0 (the old Rust/threads release) runs in a separate
virtualenv (``benchmarks/.venv-mp020``, created on first use) through
``mp020_child.py``.

``smoke()`` runs every contender once on tiny tasks, for the test suite:
``sys.path.insert(0, "benchmarks"); import run; run.smoke()`` (or load this
file with importlib), or ``python benchmarks/run.py --smoke``.
"""

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    # Worker processes must import the workload functions by module name.
    sys.path.insert(0, str(HERE))

import workloads  # noqa: E402
from machine import (  # noqa: E402
    CpuMeter,
    describe_machine,
    makeparallel_fingerprint,
    usable_cpus,
    wait_for_idle,
)

TASKS = 8
TASK_SECONDS = 0.1
SMOKE_TASK_SECONDS = 0.002
WARMUP_NAP = 0.05
REPETITIONS = 5
QUICK_REPETITIONS = 2
BUSY_SHARE = 0.05  # flag rows during which other processes used more CPU than this
LIMIT_SLACK = 1.01  # flag rows whose work/wall speed-up exceeds workers x this
DEFAULT_OUT = HERE / "results" / "latest.json"
MP020_VERSION = "0.2.0"
MP020_VENV = HERE / ".venv-mp020"
MP020_CHILD = HERE / "mp020_child.py"

Runner = Callable[[], list[Any]]


@dataclass(frozen=True)
class Config:
    loop_count: int  # spin(loop_count) is one task
    tasks: int
    workers: int
    expected: int  # spin(loop_count), to check every result

    def items(self) -> list[int]:
        return [self.loop_count] * self.tasks

    def naps(self) -> list[float]:
        return [WARMUP_NAP] * self.workers


@dataclass
class Row:
    key: str
    label: str
    mode: str
    status: str = "ok"  # ok | skipped | unavailable | error
    note: str = ""
    samples: list[float] = field(default_factory=list)  # wall seconds of each repetition
    task_cpu: list[list[float]] = field(default_factory=list)  # each task's CPU s, per repetition
    foreign_cpu_s: float = 0.0  # CPU seconds other processes used while this row ran
    capacity_s: float = 0.0  # wall seconds x CPUs while this row ran

    @property
    def foreign_cpu_share(self) -> float | None:
        return round(self.foreign_cpu_s / self.capacity_s, 3) if self.capacity_s else None

    def fail(self, status: str, note: str) -> None:
        self.status, self.note = status, note
        self.samples.clear()
        self.task_cpu.clear()

    def add(self, wall_s: float, task_cpu_s: list[float]) -> None:
        """Record one repetition: its wall seconds and the CPU seconds of each of its tasks."""
        self.samples.append(wall_s)
        self.task_cpu.append(task_cpu_s)

    def work_speedups(self) -> list[float]:
        """Per repetition: the tasks' CPU seconds, summed, per wall second."""
        return [sum(cpu) / wall for wall, cpu in zip(self.samples, self.task_cpu, strict=True)]

    def summary(self, serial_median: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "label": self.label,
            "mode": self.mode,
            "status": self.status,
            "note": self.note,
            "foreign_cpu_share": self.foreign_cpu_share,
        }
        if self.samples:
            median = statistics.median(self.samples)
            out.update(
                median_s=round(median, 4),
                min_s=round(min(self.samples), 4),
                max_s=round(max(self.samples), 4),
                samples_s=[round(s, 4) for s in self.samples],
                speedup=round(serial_median / median, 2) if serial_median else None,
            )
        if self.samples and len(self.task_cpu) == len(self.samples):
            work = self.work_speedups()
            every_task = [cpu for repetition in self.task_cpu for cpu in repetition]
            out.update(
                work_speedup=round(statistics.median(work), 2),
                work_speedup_min=round(min(work), 2),
                work_speedup_max=round(max(work), 2),
                work_speedup_samples=[round(w, 3) for w in work],
                task_cpu_samples_s=[round(sum(cpu), 4) for cpu in self.task_cpu],
                task_cpu_median_s=round(statistics.median(every_task), 4),
            )
        return out


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    mode: str
    session: Callable[[Config], contextlib.AbstractContextManager[Runner]]
    note: str = ""


# -- the contenders -------------------------------------------------------------
# Each session sets a pool up (untimed), yields the timed callable, then tears
# the pool down (untimed), so that no idle pool lingers during the next one.


# The serial loop runs in a fresh Python process each round, like the pools'
# workers: the speed of the same pure-Python loop differs by up to ~14% from one
# process to the next on some machines (memory layout), so a baseline taken in
# one process only would tilt every speed-up of the run the same way.
_SERIAL_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import workloads
n, tasks = int(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
for _ in sys.stdin:
    print(json.dumps([workloads.spin_timed(n) for _ in range(tasks)]), flush=True)
"""


@contextlib.contextmanager
def serial(cfg: Config) -> Iterator[Runner]:
    command = [sys.executable, "-c", _SERIAL_CHILD, str(HERE), str(cfg.loop_count)]
    command.append(str(cfg.tasks))
    pipe = subprocess.PIPE
    with subprocess.Popen(command, stdin=pipe, stdout=pipe, text=True) as child:
        if child.stdin is None or child.stdout is None:
            raise RuntimeError("no pipes to the serial child process")
        stdin, stdout = child.stdin, child.stdout

        def run() -> list[Any]:
            stdin.write("go\n")
            stdin.flush()
            results: list[Any] = json.loads(stdout.readline())
            return results

        try:
            if stdout.readline().strip() != "ready":
                raise RuntimeError("the serial child process did not start")
            yield run
        finally:
            stdin.close()  # its loop ends at end of input
            child.wait(timeout=60)
    if child.returncode != 0:
        raise RuntimeError(f"the serial child process exited with {child.returncode}")


@contextlib.contextmanager
def makeparallel_pool_warm(cfg: Config) -> Iterator[Runner]:
    import makeparallel as mp

    pool = mp.Pool(workers=cfg.workers)
    try:
        mp.gather([pool.submit(workloads.nap, s) for s in cfg.naps()])
        yield lambda: mp.gather([pool.submit(workloads.spin_timed, n) for n in cfg.items()])
    finally:
        pool.shutdown()


@contextlib.contextmanager
def makeparallel_decorator_warm(cfg: Config) -> Iterator[Runner]:
    import makeparallel as mp

    mp.configure(workers=cfg.workers)  # a fresh default pool of N workers
    try:
        spin = mp.parallel(workloads.spin_timed)
        nap = mp.parallel(workloads.nap)
        mp.gather([nap(s) for s in cfg.naps()])
        yield lambda: mp.gather([spin(n) for n in cfg.items()])
    finally:
        mp.configure()  # shuts that default pool down


@contextlib.contextmanager
def makeparallel_map_warm(cfg: Config) -> Iterator[Runner]:
    import makeparallel as mp

    mp.configure(workers=cfg.workers)
    try:
        mp.parallel_map(workloads.nap, cfg.naps(), chunksize=1)
        yield lambda: mp.parallel_map(workloads.spin_timed, cfg.items())
    finally:
        mp.configure()


@contextlib.contextmanager
def makeparallel_pool_cold(cfg: Config) -> Iterator[Runner]:
    import makeparallel as mp

    def run() -> list[Any]:
        with mp.Pool(workers=cfg.workers) as pool:
            return mp.gather([pool.submit(workloads.spin_timed, n) for n in cfg.items()])

    yield run


@contextlib.contextmanager
def makeparallel_map_cold(cfg: Config) -> Iterator[Runner]:
    import makeparallel as mp

    yield lambda: mp.parallel_map(workloads.spin_timed, cfg.items(), workers=cfg.workers)


def _submit_all(
    executor: concurrent.futures.Executor, fn: Callable[[Any], Any], args: list[Any]
) -> list[Any]:
    futures = [executor.submit(fn, a) for a in args]
    return [f.result() for f in futures]


@contextlib.contextmanager
def process_pool_executor_warm(cfg: Config) -> Iterator[Runner]:
    with concurrent.futures.ProcessPoolExecutor(max_workers=cfg.workers) as executor:
        _submit_all(executor, workloads.nap, cfg.naps())
        yield lambda: _submit_all(executor, workloads.spin_timed, cfg.items())


@contextlib.contextmanager
def process_pool_executor_cold(cfg: Config) -> Iterator[Runner]:
    def run() -> list[Any]:
        with concurrent.futures.ProcessPoolExecutor(max_workers=cfg.workers) as executor:
            return _submit_all(executor, workloads.spin_timed, cfg.items())

    yield run


@contextlib.contextmanager
def multiprocessing_pool_warm(cfg: Config) -> Iterator[Runner]:
    pool = multiprocessing.Pool(cfg.workers)
    try:
        pool.map(workloads.nap, cfg.naps(), chunksize=1)
        yield lambda: pool.map(workloads.spin_timed, cfg.items(), chunksize=1)
    finally:
        pool.close()
        pool.join()


@contextlib.contextmanager
def joblib_warm(cfg: Config) -> Iterator[Runner]:
    from joblib import Parallel, delayed  # type: ignore[import-untyped]
    from joblib.externals.loky import get_reusable_executor  # type: ignore[import-untyped]

    # joblib keeps its loky workers alive between Parallel calls (the "reusable executor").
    try:
        Parallel(n_jobs=cfg.workers)(delayed(workloads.nap)(s) for s in cfg.naps())
        spin = delayed(workloads.spin_timed)
        yield lambda: Parallel(n_jobs=cfg.workers)(spin(n) for n in cfg.items())
    finally:
        get_reusable_executor().shutdown(wait=True)


@contextlib.contextmanager
def loky_warm(cfg: Config) -> Iterator[Runner]:
    from loky import get_reusable_executor  # type: ignore[import-untyped]

    executor = get_reusable_executor(max_workers=cfg.workers)
    try:
        _submit_all(executor, workloads.nap, cfg.naps())
        yield lambda: _submit_all(executor, workloads.spin_timed, cfg.items())
    finally:
        executor.shutdown(wait=True)


@contextlib.contextmanager
def pebble_warm(cfg: Config) -> Iterator[Runner]:
    from pebble import ProcessPool

    pool = ProcessPool(max_workers=cfg.workers)

    def schedule_all(fn: Callable[[Any], Any], args: list[Any]) -> list[Any]:
        futures = [pool.schedule(fn, args=(a,)) for a in args]
        return [f.result() for f in futures]

    try:
        schedule_all(workloads.nap, cfg.naps())
        yield lambda: schedule_all(workloads.spin_timed, cfg.items())
    finally:
        pool.close()  # type: ignore[no-untyped-call]
        pool.join()


@contextlib.contextmanager
def mpire_as_used(cfg: Config) -> Iterator[Runner]:
    from mpire.pool import WorkerPool

    def run() -> list[Any]:
        with WorkerPool(n_jobs=cfg.workers) as pool:
            return list(pool.map(workloads.spin_timed, cfg.items(), progress_bar=False))

    yield run


@contextlib.contextmanager
def mpire_keep_alive(cfg: Config) -> Iterator[Runner]:
    from mpire.pool import WorkerPool

    pool = WorkerPool(n_jobs=cfg.workers, keep_alive=True)
    try:
        pool.map(workloads.nap, cfg.naps(), chunk_size=1)
        yield lambda: list(pool.map(workloads.spin_timed, cfg.items(), progress_bar=False))
    finally:
        pool.terminate()


CONTENDERS: tuple[Contender, ...] = (
    Contender("serial", "serial (plain loop)", "-", serial, "in a fresh Python process each round"),
    # Fork-based pools run before the ones that keep threads in this process.
    Contender("process_pool_executor", "ProcessPoolExecutor", "warm", process_pool_executor_warm),
    Contender(
        "process_pool_executor_cold",
        "ProcessPoolExecutor",
        "cold",
        process_pool_executor_cold,
        "with-block: create + 8 tasks + shutdown",
    ),
    Contender("multiprocessing_pool", "multiprocessing.Pool", "warm", multiprocessing_pool_warm),
    Contender("pebble", "pebble.ProcessPool", "warm", pebble_warm),
    Contender(
        "mpire",
        "mpire.WorkerPool",
        "cold",
        mpire_as_used,
        "as normally used: `with WorkerPool(...) as p: p.map(...)`, workers start per map",
    ),
    Contender(
        "mpire_keep_alive",
        "mpire.WorkerPool(keep_alive=True)",
        "warm",
        mpire_keep_alive,
        "workers reused across map calls",
    ),
    Contender(
        "makeparallel_pool", "makeparallel Pool.submit + gather", "warm", makeparallel_pool_warm
    ),
    Contender(
        "makeparallel_decorator",
        "makeparallel @parallel + gather",
        "warm",
        makeparallel_decorator_warm,
        "default pool",
    ),
    Contender(
        "makeparallel_map",
        "makeparallel parallel_map",
        "warm",
        makeparallel_map_warm,
        "default pool",
    ),
    Contender(
        "makeparallel_pool_cold",
        "makeparallel Pool.submit + gather",
        "cold",
        makeparallel_pool_cold,
        "with-block: create + 8 tasks + shutdown",
    ),
    Contender(
        "makeparallel_map_cold",
        "makeparallel parallel_map(workers=N)",
        "cold",
        makeparallel_map_cold,
        "the call creates and shuts down its own pool",
    ),
    Contender("joblib", "joblib.Parallel (loky)", "warm", joblib_warm, "loky reusable executor"),
    Contender("loky", "loky.get_reusable_executor", "warm", loky_warm),
)


def task_cpu_seconds(results: Any, cfg: Config) -> list[float]:
    """Check a run's ``spin_timed`` results; return each task's CPU seconds."""
    pairs = [tuple(pair) for pair in results]  # lists after JSON, tuples otherwise
    if [pair[:1] for pair in pairs] != [(cfg.expected,)] * cfg.tasks or any(
        len(pair) != 2 or not isinstance(pair[1], float) for pair in pairs
    ):
        raise RuntimeError(f"wrong results: {pairs!r}")
    return [float(pair[1]) for pair in pairs]


def new_row(contender: Contender) -> Row:
    return Row(contender.key, contender.label, contender.mode, note=contender.note)


def measure(
    contender: Contender, cfg: Config, row: Row, repetitions: int = 1, strict: bool = False
) -> None:
    """Set the contender up, time ``repetitions`` runs into ``row``, tear it down.

    A missing package marks the row skipped; any other failure marks it as an
    error (or raises, with ``strict``).
    """
    meter = CpuMeter()
    try:
        with contender.session(cfg) as run:
            for _ in range(repetitions):
                start = time.perf_counter()
                results = run()
                wall = time.perf_counter() - start
                row.add(wall, task_cpu_seconds(results, cfg))
    except ImportError as exc:
        row.fail("skipped", f"not installed ({exc.name or exc})")
    except Exception as exc:
        if strict:
            raise
        traceback.print_exc()
        row.fail("error", f"{type(exc).__name__}: {exc}")
    meter.add_to([row])


# -- makeparallel 0.2.0, in its own virtualenv --------------------------------------


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_mp020_venv(venv: Path = MP020_VENV) -> tuple[Path | None, str]:
    """The Python of a virtualenv with makeparallel 0.2.0 (created if needed), or why not."""
    python = _venv_python(venv)
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('makeparallel'))"]
    try:
        if python.exists():
            found = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
            if found.returncode == 0 and found.stdout.strip() == MP020_VERSION:
                return python, ""
        else:
            print(f"creating {venv} (makeparallel=={MP020_VERSION}) ...", file=sys.stderr)
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"makeparallel=={MP020_VERSION}"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot create the virtualenv: {exc}"
    if install.returncode != 0:
        tail = " ".join(install.stderr.strip().splitlines()[-3:])
        return None, f"pip install makeparallel=={MP020_VERSION} failed: {tail}"
    return python, ""


class OldRelease:
    """makeparallel 0.2.0, timed by ``mp020_child.py`` in its own virtualenv."""

    APIS = ("parallel", "parallel_map")

    def __init__(self, python: Path | None, reason: str) -> None:
        self.python = python
        self.rows = [
            Row("makeparallel_020_decorator", "makeparallel 0.2.0 @parallel + .get()", "warm"),
            Row("makeparallel_020_map", "makeparallel 0.2.0 parallel_map", "warm"),
        ]
        self.serial_there: list[float] = []
        self.serial_work_there: list[float] = []  # the serial loop's work/wall there
        if python is None:
            for row in self.rows:
                row.fail("unavailable", reason)

    def measure(self, cfg: Config, repetitions: int = 1) -> None:
        """One run of the child: ``repetitions`` timings of each API (and of a serial loop)."""
        if self.python is None or self.rows[0].status != "ok":
            return
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        command = [str(self.python), str(MP020_CHILD), str(cfg.loop_count), str(cfg.tasks)]
        command.append(str(repetitions))
        meter = CpuMeter()
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=300, env=env, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(f"exit status {done.returncode}: {done.stderr.strip()[-500:]}")
            report = json.loads(done.stdout.strip().splitlines()[-1])
            samples, task_cpu = report["samples"], report["task_cpu"]
        except (
            OSError,
            subprocess.SubprocessError,
            RuntimeError,
            ValueError,
            IndexError,
            KeyError,
        ) as exc:
            for row in self.rows:
                row.fail("error", f"{type(exc).__name__}: {exc}")
            return
        meter.add_to(self.rows)
        self.serial_there.extend(samples["serial"])
        self.serial_work_there.extend(
            sum(cpu) / wall for wall, cpu in zip(samples["serial"], task_cpu["serial"], strict=True)
        )
        for row, api in zip(self.rows, self.APIS, strict=True):
            for wall, cpu in zip(samples[api], task_cpu[api], strict=True):
                row.add(wall, cpu)
            row.note = (
                f"threads; separate venv (Python {report['python']}), where the serial loop "
                f"took {statistics.median(self.serial_there):.3f} s "
                f"({statistics.median(self.serial_work_there):.2f}x work/wall)"
            )


# -- running and reporting ------------------------------------------------------------


def run_cpu(
    rounds: int, task_seconds: float, with_mp020: bool, wait_idle: float = 0.0
) -> dict[str, Any]:
    """The "cpu" benchmark: ``rounds`` rounds, each timing every contender once.

    Interleaving the contenders (rather than timing one contender ``rounds``
    times in a row) spreads slow drifts of the machine over all of them alike.
    Each round sets every pool up afresh (untimed for warm rows). With
    ``wait_idle``, each round first waits up to that long for an idle machine.
    """
    workers = usable_cpus()
    loop_count = workloads.calibrate(task_seconds)
    task_time = statistics.median(workloads.time_call(workloads.spin, loop_count) for _ in range(3))
    cfg = Config(loop_count, TASKS, workers, workloads.spin(loop_count))
    print(
        f"cpu: {TASKS} tasks x {task_time:.3f} s (spin({loop_count})), {workers} workers, "
        f"{rounds} rounds",
        file=sys.stderr,
    )
    rows = [new_row(contender) for contender in CONTENDERS]
    old = OldRelease(*ensure_mp020_venv()) if with_mp020 else None
    for number in range(1, rounds + 1):
        if wait_idle > 0:
            wait_for_idle(wait_idle)
        print(f"round {number}/{rounds}", file=sys.stderr)
        for contender, row in zip(CONTENDERS, rows, strict=True):
            if row.status == "ok":
                measure(contender, cfg, row)
        if old is not None:
            old.measure(cfg)
    if old is not None:
        rows.extend(old.rows)
    for row in rows:
        _progress(row, workers)
    serial_median = statistics.median(rows[0].samples) if rows[0].samples else None
    return {
        "description": (
            "CPU-bound speed-up: pure-Python arithmetic tasks; work/wall (the tasks' own CPU "
            "seconds per wall second) and the raw ratio to serial"
        ),
        "tasks": TASKS,
        "loop_count": loop_count,
        "task_seconds": round(task_time, 4),
        "workers": workers,
        "repetitions": rounds,
        "method": (
            f"{rounds} rounds; each round sets up and times every contender once, in table "
            "order; median/min/max over the rounds"
        ),
        "warmup": f"warm rows: one {WARMUP_NAP} s sleep task per worker, submitted together",
        "serial_median_s": None if serial_median is None else round(serial_median, 4),
        "work_speedup_limit": workers,
        "figures": {
            "work_speedup": (
                "per repetition: the sum of the tasks' CPU seconds (time.thread_time read inside "
                "each task, in the process and thread that ran it) / the repetition's wall "
                "seconds; median, min and max over the rounds; at most the number of workers"
            ),
            "speedup": (
                "serial_median_s / the row's median_s; the serial loop and the pools' workers "
                "are different processes, whose speed on the same loop can differ"
            ),
            "task_cpu_median_s": "median CPU seconds of one task, over all tasks of all rounds",
        },
        "results": [row.summary(serial_median) for row in rows],
    }


def _progress(row: Row, workers: int) -> None:
    if row.samples:
        work = row.work_speedups()
        text = (
            f"median {statistics.median(row.samples):.3f} s, "
            f"work/wall {statistics.median(work):.2f}x ({min(work):.2f}-{max(work):.2f})"
        )
        if max(work) > workers * LIMIT_SLACK:
            text += f"  <- above the {workers}-worker limit"
    else:
        text = f"{row.status}: {row.note}"
    print(f"  {row.label} [{row.mode}]: {text}", file=sys.stderr)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown_table(cpu: dict[str, Any]) -> str:
    """The table of a "cpu" benchmark result (older files without work/wall show "-")."""
    lines = [
        "| Contender | Pool | Speed-up (work/wall) | Work/wall min-max | Speed-up vs serial "
        "| CPU per task (s) | Median (s) | Min (s) | Max (s) | Notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    limit = cpu.get("workers", 0) * LIMIT_SLACK
    for r in cpu["results"]:
        notes = [r["note"].replace("|", "\\|")] if r["note"] else []
        if r["status"] == "ok":
            work = r.get("work_speedup")
            spread = "-"
            if work is not None:
                spread = f"{r['work_speedup_min']:.2f}-{r['work_speedup_max']:.2f}"
            cpu_per_task = r.get("task_cpu_median_s")
            figures = [
                _times(work),
                spread,
                _times(r["speedup"]),
                "-" if cpu_per_task is None else f"{cpu_per_task:.3f}",
                f"{r['median_s']:.3f}",
                f"{r['min_s']:.3f}",
                f"{r['max_s']:.3f}",
            ]
            if work is not None and limit and r["work_speedup_max"] > limit:
                notes.append(f"ABOVE THE {cpu['workers']}-WORKER LIMIT: check the measurement")
        else:
            figures = [r["status"], "-", "-", "-", "-", "-", "-"]
        share = r.get("foreign_cpu_share")
        if share is not None and share > BUSY_SHARE:
            notes.append(f"BUSY MACHINE: {share:.0%} of the CPU time went to other processes")
        cells = [r["label"], r["mode"], *figures, "; ".join(notes)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def smoke() -> None:
    """Run every contender once on tiny tasks (a few ms); raise if one fails.

    Skips makeparallel 0.2.0 (it needs its own virtualenv) and peers that are
    not installed. For the test suite, to keep this script from rotting.
    """
    loop_count = workloads.calibrate(SMOKE_TASK_SECONDS)
    cfg = Config(loop_count, TASKS, usable_cpus(), workloads.spin(loop_count))
    for contender in CONTENDERS:
        row = new_row(contender)
        measure(contender, cfg, row, strict=True)
        if row.status == "ok" and (len(row.samples) != 1 or len(row.task_cpu) != 1):
            raise AssertionError(f"{contender.key}: expected one timing, got {row.samples}")
        if row.status == "ok" and not all(cpu > 0 for cpu in row.task_cpu[0]):
            raise AssertionError(f"{contender.key}: task CPU times {row.task_cpu[0]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--repetitions", type=int, help="number of rounds (default 5, --quick 2)")
    parser.add_argument(
        "--no-mp020", action="store_true", help="skip makeparallel 0.2.0 (no extra virtualenv)"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before the run and each round, wait up to SECONDS for 95%% idle CPUs",
    )
    parser.add_argument("--smoke", action="store_true", help="run smoke() and exit")
    parser.add_argument(
        "--show", type=Path, metavar="JSON", help="print the table of a saved run and exit"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        smoke()
        print("smoke: ok")
        return 0
    if args.show:
        print(markdown_table(json.loads(args.show.read_text())["benchmarks"]["cpu"]))
        return 0
    repetitions = args.repetitions
    if repetitions is None:
        repetitions = QUICK_REPETITIONS if args.quick else REPETITIONS
    if repetitions < 1:
        parser.error("--repetitions must be >= 1")
    idle = wait_for_idle(args.wait_idle)
    if idle is not None and idle < 0.9:
        print(
            f"warning: only {idle:.0%} of the CPUs are idle; other processes compete with "
            "the benchmark and the figures will be off",
            file=sys.stderr,
        )
    started = time.perf_counter()
    machine = describe_machine()
    machine["cpu_idle_before"] = None if idle is None else round(idle, 2)
    load_before = os.getloadavg()
    meter = CpuMeter()
    cpu = run_cpu(repetitions, TASK_SECONDS, not args.no_mp020, args.wait_idle)
    fingerprint = makeparallel_fingerprint()
    machine["makeparallel_source_sha256_after"] = fingerprint
    if fingerprint != machine["makeparallel_source_sha256"]:
        print(
            "warning: makeparallel's source files changed during the run; the figures mix versions",
            file=sys.stderr,
        )
    whole_run = Row("run", "whole run", "-")
    meter.add_to([whole_run])
    machine["foreign_cpu_share_during_run"] = whole_run.foreign_cpu_share
    mp020 = next((r for r in cpu["results"] if r["key"].startswith("makeparallel_020")), None)
    machine["packages"]["makeparallel 0.2.0 (separate venv)"] = (
        MP020_VERSION if mp020 is not None and mp020["status"] == "ok" else None
    )
    machine["load_average_before"] = [round(x, 2) for x in load_before]
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "schema": 2,  # 2 added the work/wall fields
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
        "mode": "quick" if args.quick else "full",
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": machine,
        "benchmarks": {"cpu": cpu},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(cpu))
    print(f"\nwritten: {args.out} ({report['duration_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
