"""Whole programs, timed from outside: what starting workers and importing cost a real run.

    python benchmarks/whole_program.py [--quick | --smoke] [--out FILE]

The other workloads time a warm pool inside a long-lived process. A user
runs whole programs, which also pay for starting their workers, for what the
parent and the workers import, and for shutting down. Here every sample is
a small program (``program_*.py``) run in a fresh interpreter; contenders
alternate in rounds, in a new order each round (``measure.run_rounds``), and
each table gives the median, min and max of the rounds.

* Compile the standard library: ``program_compile.py`` compiles every
  ``.py`` file of the standard library (``workloads.compile_file``, one item
  per file) with one contender and exits; the figure is the wall time of the
  whole process, from its start to its exit. ``ProcessPoolExecutor`` gets
  its best chunksize for each start method: a calibration pass (a table of
  its own) first runs the same program with chunksizes 1, 4, 16 and 64, and
  the main table uses the fastest median of each method.
* Short script: ``program_short.py`` imports its module (``task_numpy.py``:
  NumPy and a dozen standard-library modules), maps that module's function
  over 16 items of about 20 ms of pure Python each and exits: the whole
  process again.
* First batch after one warm task: ``program_first_batch.py`` creates a
  pool, runs one tiny task and waits for it, then imports a module that
  imports pytest (``task_pytest.py``), which the workers have not imported,
  and times a batch of 4 tasks of about 70 ms from that module, first submit
  to last result; then, with the pool shut down, the same 4 calls one after
  the other in the program. The figure is the ratio of the two, taken inside
  each run: the batch's speed-up.
* Parent import: ``python -c "import makeparallel as mp; mp.parallel_map; mp.Pool"``
  (makeparallel loads its names on first use) against the imports of the
  other pools and ``python -c pass``, each from start to exit; a sample is
  the median of 10 runs.
* A main-script function that reads a large global: ``program_global.py``
  builds a 1-million-entry dict at module level; on a warm pool it submits a
  function of the script that reads it 20 times and reads every result, or
  maps it over 200 keys with ``chunksize=1``. That part is timed inside the
  program; the whole process's time is shown next to it.

The loop counts of the short script's items and of the batch's tasks are
calibrated once at the start, in this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads
from machine import usable_cpus
from measure import PRIMARY, Contender, Measure, Row, run_rounds
from real_workload import stdlib_files
from report import Section, add_ratio, main_for, median_of, rounds, table

NAME = "whole_program"
HERE = Path(__file__).resolve().parent
SMOKE_FILES = 20
CHUNKSIZES = (1, 4, 16, 64)
CALIBRATION_ROUNDS = 3  # at most; rounds of the chunksize calibration
START_METHODS = ("fork", "forkserver", "spawn")
SHORT_ITEMS = {"full": 16, "quick": 16, "smoke": 4}
ITEM_SECONDS = 0.02
BATCH_TASKS = 4
TASK_SECONDS = {"full": 0.07, "quick": 0.07, "smoke": 0.02}
LAUNCHES = {"full": 10, "quick": 10, "smoke": 2}  # python -c runs per sample (median)
SUBMITS = {"full": 20, "quick": 20, "smoke": 2}
MAP_ITEMS = {"full": 200, "quick": 200, "smoke": 4}
GLOBAL_ENTRIES = {"full": 1_000_000, "quick": 1_000_000, "smoke": 10_000}
TIMEOUT = 600.0
FORKED = "forked from this program as it was when the pool started"

IMPORTS = (  # key, label, the code of python -c
    ("makeparallel", "makeparallel", "import makeparallel as mp; mp.parallel_map; mp.Pool"),
    ("ppe", "ProcessPoolExecutor", "import concurrent.futures.process"),
    ("mp_pool", "multiprocessing.Pool", "import multiprocessing.pool"),
    ("joblib", "joblib", "from joblib import Parallel, delayed"),
    ("floor", "floor: an interpreter alone", "pass"),
)


def python(*args: str) -> list[str]:
    """A command that runs this interpreter, with this process's flags, on ``args``."""
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    return [sys.executable, *flags, *args]


def program(name: str, *args: object) -> list[str]:
    return python(str(HERE / name), *(str(a) for a in args))


def launch(command: list[str], env: dict[str, str] | None = None) -> tuple[float, Any]:
    """Run ``command`` in a new process: seconds from its start to its exit, and its last line.

    The output goes to files, not pipes, so the clock stops when the program
    exits, not when the last of its workers lets go of an inherited pipe.
    The last line the program printed is read as JSON (None if it printed nothing).
    ``env``: variables to set for it, on top of this process's environment.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env},
        )
        # A blocking wait, not wait(timeout): Popen polls a wait with a timeout in
        # sleeps of up to 50 ms, which would round every run up to the next step.
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            process.kill()

        watchdog = threading.Timer(TIMEOUT, stop)
        watchdog.start()
        try:
            code = process.wait()
        finally:
            watchdog.cancel()
        elapsed = time.perf_counter() - started
        if timed_out.is_set():
            raise subprocess.TimeoutExpired(command, TIMEOUT)
        out.seek(0)
        err.seek(0)
        lines = out.read().decode().strip().splitlines()
        if code != 0:
            tail = " ".join(err.read().decode(errors="replace").strip().splitlines()[-3:])
            raise RuntimeError(f"the program exited with {code}: {tail}")
    return elapsed, json.loads(lines[-1]) if lines else None


class Same:
    """Every run must print what the first one printed (and something)."""

    def __init__(self) -> None:
        self._first: Any = None

    def __call__(self, printed: Any) -> bool:
        if self._first is None:
            self._first = printed
        return printed is not None and printed == self._first


@contextlib.contextmanager
def whole_process(command: list[str], check: Callable[[Any], bool]) -> Iterator[Measure]:
    """A session whose every sample is one run of ``command``, start to exit."""

    def measure() -> float:
        seconds, printed = launch(command)
        if not check(printed):
            raise RuntimeError(f"wrong result: {printed!r}")
        return seconds

    yield measure


@contextlib.contextmanager
def median_of_launches(command: list[str], launches: int) -> Iterator[Measure]:
    """A session whose every sample is the median of ``launches`` runs of ``command``."""
    yield lambda: statistics.median(launch(command)[0] for _ in range(launches))


@contextlib.contextmanager
def first_batch(command: list[str]) -> Iterator[Measure]:
    """A session whose samples are the speed-up a run of ``program_first_batch.py`` printed."""

    def measure() -> dict[str, float]:
        _, printed = launch(command)
        batch, serial = printed["batch_s"], printed["serial_s"]
        return {PRIMARY: serial / batch, "batch_ms": batch * 1e3, "serial_ms": serial * 1e3}

    yield measure


@contextlib.contextmanager
def timed_inside(command: list[str], env: dict[str, str]) -> Iterator[Measure]:
    """A session whose samples are the time a program printed, and its whole process's."""

    def measure() -> dict[str, float]:
        seconds, printed = launch(command, env)
        return {PRIMARY: printed["seconds"], "process_s": seconds}

    yield measure


def best_chunksizes(rows: list[Row]) -> dict[str, int]:
    """The chunksize of each start method's fastest calibration row (1 if none measured)."""
    best: dict[str, int] = {}
    for method in START_METHODS:
        timed = [
            (statistics.median(row.samples[PRIMARY]), int(row.key.rsplit("_", 1)[1]))
            for row in rows
            if row.key.startswith(f"ppe_{method}_") and row.status == "ok"
        ]
        best[method] = min(timed)[1] if timed else 1
    return best


def compile_tables(size: str, repetitions: int, workers: int) -> list[dict[str, Any]]:
    files = stdlib_files(SMOKE_FILES if size == "smoke" else None)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(files))
    try:
        for path in files:  # every run finds them in the page cache
            Path(path).read_bytes()
        check = Same()

        def compiling(key: str, chunksize: int = 0) -> Callable[[], Any]:
            command = program("program_compile.py", key, workers, chunksize, listing.name)
            return partial(whole_process, command, check)

        calibration = tuple(
            Contender(
                f"ppe_{method}_{chunksize}",
                f"ProcessPoolExecutor ({method}), chunksize={chunksize}",
                compiling(f"ppe_{method}", chunksize),
            )
            for method in START_METHODS
            for chunksize in CHUNKSIZES
        )
        tried = run_rounds(
            calibration, min(repetitions, CALIBRATION_ROUNDS), "whole program: chunksizes"
        )
        best = best_chunksizes(tried)
        mp_chunksize = -(-len(files) // (4 * workers))  # multiprocessing.Pool.map's default
        contenders = (
            Contender("serial", "serial loop", compiling("serial"), "no pool"),
            Contender(
                "makeparallel",
                "makeparallel parallel_map",
                compiling("makeparallel"),
                "default pool, automatic chunks",
            ),
            Contender(
                "makeparallel_fork",
                'makeparallel Pool(start="fork").map',
                compiling("makeparallel_fork"),
                "automatic chunks",
            ),
            *(
                Contender(
                    f"ppe_{method}",
                    f"ProcessPoolExecutor ({method}).map",
                    compiling(f"ppe_{method}", best[method]),
                    f"chunksize={best[method]}, the fastest of the calibration",
                )
                for method in START_METHODS
            ),
            Contender(
                "mp_pool",
                "multiprocessing.Pool.map",
                compiling("mp_pool"),
                f"default chunksize ({mp_chunksize})",
            ),
            Contender(
                "joblib",
                "joblib.Parallel (loky)",
                compiling("joblib"),
                f"n_jobs={workers}, batch_size='auto'",
            ),
        )
        measured = run_rounds(contenders, repetitions, "whole program: compile")
    finally:
        os.unlink(listing.name)
    corpus = f"the {len(files):,} .py files of the standard library"
    out = table(
        "compile_stdlib",
        "Whole program: compile the standard library",
        measured,
        unit="s",
        what=(
            f"a program that compiles {corpus}, one item per file, and exits: its wall time "
            "from start to exit, pool start-up, imports and shutdown included"
        ),
    )
    calibrated = table(
        "ppe_chunksize",
        "Whole program: ProcessPoolExecutor's chunksize",
        tried,
        unit="s",
        what=(
            f"the same program with `ProcessPoolExecutor.map` at chunksizes "
            f"{', '.join(map(str, CHUNKSIZES))}, for each start method; "
            f"{rounds(min(repetitions, CALIBRATION_ROUNDS))}; the fastest median of each "
            "method is the one in the table above"
        ),
    )
    return [
        add_ratio(out, "speed-up vs serial", median_of(out, "serial"), speedup=True),
        calibrated,
    ]


def short_script_table(size: str, repetitions: int, workers: int) -> dict[str, Any]:
    count, loops = SHORT_ITEMS[size], workloads.calibrate(ITEM_SECONDS)
    expected = sum(workloads.spin(loops + i) for i in range(count))

    def script(key: str) -> Callable[[], Any]:
        command = program("program_short.py", key, workers, count, loops)
        return partial(whole_process, command, lambda printed: printed == expected)

    contenders = (
        Contender("serial", "serial loop", script("serial"), "no pool"),
        Contender(
            "makeparallel", "makeparallel parallel_map", script("makeparallel"), "default pool"
        ),
        Contender(
            "makeparallel_fork", 'makeparallel Pool(start="fork").map', script("makeparallel_fork")
        ),
        *(
            Contender(
                f"ppe_{method}",
                f"ProcessPoolExecutor ({method}).map",
                script(f"ppe_{method}"),
                "default chunksize (1)",
            )
            for method in START_METHODS
        ),
        Contender("mp_pool", "multiprocessing.Pool.map", script("mp_pool"), "default chunksize"),
        Contender("joblib", "joblib.Parallel (loky)", script("joblib"), f"n_jobs={workers}"),
    )
    out = table(
        "short_script",
        "Whole program: a short script",
        run_rounds(contenders, repetitions, "whole program: short script"),
        unit="s",
        what=(
            f"a script that imports its module (NumPy and a dozen standard-library modules), "
            f"maps that module's function over {count} items of about "
            f"{ITEM_SECONDS * 1e3:.0f} ms of pure Python each and exits: wall time from start "
            "to exit"
        ),
    )
    return add_ratio(out, "speed-up vs serial", median_of(out, "serial"), speedup=True)


def first_batch_table(size: str, repetitions: int, workers: int) -> dict[str, Any]:
    seconds = TASK_SECONDS[size]
    loops = workloads.calibrate(seconds)
    pools = (
        ("makeparallel", "makeparallel Pool", "default start: forked when safe (here: yes)"),
        ("makeparallel_fork", 'makeparallel Pool(start="fork")', FORKED),
        ("ppe_fork", "ProcessPoolExecutor (fork)", "every worker forked at the first submit"),
        (
            "ppe_spawn",
            "ProcessPoolExecutor (spawn)",
            "fresh interpreters, started as submits need them",
        ),
    )
    contenders = tuple(
        Contender(
            key,
            label,
            partial(
                first_batch, program("program_first_batch.py", key, workers, BATCH_TASKS, loops)
            ),
            note,
        )
        for key, label, note in pools
    )
    ms = seconds * 1e3
    return table(
        "first_batch",
        "First batch after one warm task",
        run_rounds(contenders, repetitions, "whole program: first batch"),
        unit="speed-up",
        figures={"batch_ms": "the batch (ms)", "serial_ms": "the same calls serially (ms)"},
        what=(
            f"in one program: a new pool runs one tiny task; then the program imports a module "
            f"that imports pytest, which the workers have not imported, and times "
            f"{BATCH_TASKS} tasks of about {ms:.0f} ms from it, first submit to last result; the "
            f"figure is the time of the same {BATCH_TASKS} calls one after the other in the "
            f"program (pool shut down) over the batch's, in each run "
            f"(limit {min(workers, BATCH_TASKS)}.0x)"
        ),
    )


def cold_start_table(size: str, repetitions: int, workers: int) -> dict[str, Any]:
    pools = (
        ("makeparallel", "makeparallel Pool", 'the default, start="auto": forked here'),
        ("makeparallel_spawn", 'makeparallel Pool(start="spawn")', "fresh interpreters"),
        ("ppe_fork", "ProcessPoolExecutor (fork)", "every worker forked at the first submit"),
        ("ppe_forkserver", "ProcessPoolExecutor (forkserver)", "the default from Python 3.14"),
        ("ppe_spawn", "ProcessPoolExecutor (spawn)", "fresh interpreters"),
    )
    contenders = tuple(
        Contender(
            key,
            label,
            partial(timed_inside, program("program_cold.py", key, workers), {}),
            note,
        )
        for key, label, note in pools
    )
    return table(
        "cold_start",
        "Cold start in a fresh program",
        run_rounds(contenders, repetitions, "whole program: cold start"),
        unit="ms",
        scale=1e3,
        figures={"process_s": "whole process (s)"},
        what=(
            f"a program that imported its pool library creates a pool of {workers} workers and "
            "waits for the first result of a no-op task: that time, measured inside the program "
            "(a fresh program, with no thread but the main one); next to it the whole process"
        ),
    )


def import_table(size: str, repetitions: int) -> dict[str, Any]:
    launches = LAUNCHES[size]
    contenders = tuple(
        Contender(
            key, label, partial(median_of_launches, python("-c", code), launches), f"`{code}`"
        )
        for key, label, code in IMPORTS
    )
    out = table(
        "parent_import",
        "Parent import",
        run_rounds(contenders, repetitions, "whole program: parent import"),
        unit="ms",
        scale=1e3,
        what=f"`python -c CODE`, from start to exit; a sample is the median of {launches} runs",
    )
    reference = median_of(out, "ppe")
    return add_ratio(out, "x concurrent.futures.process", reference, speedup=False)


def global_tables(size: str, repetitions: int, workers: int) -> list[dict[str, Any]]:
    by_value = "a `__main__` function travels by value, with the globals it reads"
    pools = (
        ("makeparallel", "makeparallel Pool", f"default start; {by_value}"),
        ("makeparallel_fork", 'makeparallel Pool(start="fork")', f"{FORKED}; {by_value}"),
        ("ppe_fork", "ProcessPoolExecutor (fork)", "every worker forked at the first submit"),
        ("ppe_spawn", "ProcessPoolExecutor (spawn)", "each worker imports the script again"),
    )
    kinds = (
        (
            "global_submits",
            "submits",
            SUBMITS[size],
            "{n} separate submits",
            "{n} separate submits of that function, from the first submit to the last result",
        ),
        (
            "global_map",
            "map",
            MAP_ITEMS[size],
            "a map over {n} keys",
            "`map` of that function over {n} keys with `chunksize=1`, from the call to the "
            "last result",
        ),
    )
    entries = GLOBAL_ENTRIES[size]
    env = {"PROGRAM_GLOBAL_ENTRIES": str(entries)}
    tables = []
    for key, kind, count, title, what in kinds:
        contenders = tuple(
            Contender(
                pool,
                label,
                partial(
                    timed_inside, program("program_global.py", pool, workers, kind, count), env
                ),
                note,
            )
            for pool, label, note in pools
        )
        tables.append(
            table(
                key,
                f"A main-script function that reads a large global: {title.format(n=count)}",
                run_rounds(contenders, repetitions, f"whole program: large global, {kind}"),
                unit="ms",
                scale=1e3,
                figures={"process_s": "whole process (s)"},
                what=(
                    f"the script builds a dict of {entries:,} entries at module level and "
                    "defines a function that reads it; on a warm pool, "
                    f"{what.format(n=count)}, timed inside the program; next to it the whole "
                    "process, from start to exit"
                ),
            )
        )
    return tables


def run(size: str, repetitions: int) -> Section:
    workers = usable_cpus()
    tables = [
        *compile_tables(size, repetitions, workers),
        short_script_table(size, repetitions, workers),
        first_batch_table(size, repetitions, workers),
        cold_start_table(size, repetitions, workers),
        import_table(size, repetitions),
        *global_tables(size, repetitions, workers),
    ]
    return {
        "title": "Whole programs",
        "description": (
            "each sample is a program run in a fresh interpreter, timed from outside unless a "
            f"table says otherwise; pools of {workers} workers; {rounds(repetitions)}"
        ),
        "repetitions": repetitions,
        "tables": tables,
    }


def main(argv: list[str] | None = None) -> int:
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
