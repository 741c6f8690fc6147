"""A real pure-Python workload on real data: compile every module of the standard library.

    python benchmarks/real_workload.py [--quick | --smoke] [--out FILE]

Each task reads one ``.py`` file of this interpreter's standard library
(``sysconfig.get_paths()["stdlib"]``, without site-packages) and compiles it
with ``compile()``: parsing and code generation, pure Python-interpreter
work of very uneven size (from empty ``__init__.py`` files to modules of
thousands of lines). The tasks get the file paths and read the files
themselves. A first pass reads every file, untimed, so that all contenders
find them in the page cache.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import platform
import sys
import sysconfig
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads
from machine import usable_cpus
from measure import WARMUP_NAP, Contender, Measure, run_rounds, timed, warm_up
from report import Section, add_ratio, main_for, median_of, rounds, table

NAME = "real_workload"
SMOKE_FILES = 20


def stdlib_files(limit: int | None = None) -> list[str]:
    """The standard library's ``.py`` files, sorted by path, without site-packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(str(p) for p in root.rglob("*.py") if "site-packages" not in p.parts)
    return files[:limit] if limit is not None else files


class Check:
    """Every contender must compile the same number of files as the first one did."""

    def __init__(self, files: list[str]) -> None:
        self._count = len(files)
        self._compiled: int | None = None

    def __call__(self, results: Any) -> bool:
        results = list(results)
        if len(results) != self._count:
            return False
        if self._compiled is None:
            self._compiled = sum(results)
        return sum(results) == self._compiled


@contextlib.contextmanager
def serial(files: list[str], check: Check, workers: int) -> Iterator[Measure]:
    yield lambda: timed(lambda: [workloads.compile_file(f) for f in files], check)


@contextlib.contextmanager
def makeparallel_map(files: list[str], check: Check, workers: int) -> Iterator[Measure]:
    import makeparallel as mp

    mp.configure(workers=workers)
    try:
        mp.parallel_map(workloads.nap, [WARMUP_NAP] * workers, chunksize=1)
        yield lambda: timed(lambda: mp.parallel_map(workloads.compile_file, files), check)
    finally:
        mp.configure()


@contextlib.contextmanager
def process_pool_executor(files: list[str], check: Check, workers: int) -> Iterator[Measure]:
    with cf.ProcessPoolExecutor(workers) as executor:
        warm_up(executor.submit, workers)
        yield lambda: timed(lambda: list(executor.map(workloads.compile_file, files)), check)


@contextlib.contextmanager
def multiprocessing_pool(files: list[str], check: Check, workers: int) -> Iterator[Measure]:
    pool = multiprocessing.Pool(workers)
    try:
        pool.map(workloads.nap, [WARMUP_NAP] * workers, chunksize=1)
        yield lambda: timed(lambda: pool.map(workloads.compile_file, files), check)
    finally:
        pool.close()
        pool.join()


@contextlib.contextmanager
def joblib_parallel(files: list[str], check: Check, workers: int) -> Iterator[Measure]:
    from joblib import Parallel, delayed  # type: ignore[import-untyped]
    from joblib.externals.loky import get_reusable_executor  # type: ignore[import-untyped]

    try:
        Parallel(n_jobs=workers)(delayed(workloads.nap)(WARMUP_NAP) for _ in range(workers))
        compile_file = delayed(workloads.compile_file)
        yield lambda: timed(lambda: Parallel(n_jobs=workers)(compile_file(f) for f in files), check)
    finally:
        get_reusable_executor().shutdown(wait=True)


def run(size: str, repetitions: int) -> Section:
    workers = usable_cpus()
    files = stdlib_files(SMOKE_FILES if size == "smoke" else None)
    megabytes = sum(len(Path(f).read_bytes()) for f in files) / 2**20  # also warms the cache
    setup = {"files": files, "check": Check(files), "workers": workers}
    contenders = (
        Contender("serial", "serial loop", partial(serial, **setup), "in this process"),
        Contender(
            "ppe",
            "ProcessPoolExecutor.map",
            partial(process_pool_executor, **setup),
            "default chunksize (1)",
        ),
        Contender(
            "mp_pool",
            "multiprocessing.Pool.map",
            partial(multiprocessing_pool, **setup),
            "default chunksize",
        ),
        Contender("joblib", "joblib.Parallel (loky)", partial(joblib_parallel, **setup)),
        Contender(
            "makeparallel_map",
            "makeparallel parallel_map",
            partial(makeparallel_map, **setup),
            "default pool, automatic chunks",
        ),
    )
    corpus = (
        f"the {len(files):,} .py files ({megabytes:.1f} MB) of the standard library of "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    out = table(
        "compile_stdlib",
        "Compile the standard library",
        run_rounds(contenders, repetitions, "real workload"),
        unit="s",
        what=f"read and `compile()` {corpus}, one task per file, warm pools",
    )
    return {
        "title": "A real workload: compiling the standard library",
        "description": (
            f"{corpus}; {workers} workers; {rounds(repetitions)}, contenders alternating within "
            "each round"
        ),
        "repetitions": repetitions,
        "files": len(files),
        "megabytes": round(megabytes, 1),
        "tables": [add_ratio(out, "speed-up vs serial", median_of(out, "serial"), speedup=True)],
    }


def main(argv: list[str] | None = None) -> int:
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
