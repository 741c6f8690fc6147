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

import platform
import sys
import sysconfig
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import map_sessions as sessions
import workloads
from machine import usable_cpus
from measure import Contender, run_rounds
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


def run(size: str, repetitions: int) -> Section:
    workers = usable_cpus()
    files = stdlib_files(SMOKE_FILES if size == "smoke" else None)
    megabytes = sum(len(Path(f).read_bytes()) for f in files) / 2**20  # also warms the cache
    check = Check(files)
    setup = {"fn": workloads.compile_file, "items": files, "check": check, "workers": workers}
    contenders = (
        Contender("serial", "serial loop", partial(sessions.serial, **setup), "in this process"),
        Contender(
            "ppe",
            "ProcessPoolExecutor.map",
            partial(sessions.process_pool_executor, **setup),
            "default chunksize (1)",
        ),
        Contender(
            "mp_pool",
            "multiprocessing.Pool.map",
            partial(sessions.multiprocessing_pool, **setup),
            "default chunksize",
        ),
        Contender("joblib", "joblib.Parallel (loky)", partial(sessions.joblib_parallel, **setup)),
        Contender(
            "makeparallel_map",
            "makeparallel parallel_map",
            partial(sessions.makeparallel_map, **setup),
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
        "description": f"{corpus}; {workers} workers; {rounds(repetitions)}",
        "repetitions": repetitions,
        "files": len(files),
        "megabytes": round(megabytes, 1),
        "tables": [add_ratio(out, "speed-up vs serial", median_of(out, "serial"), speedup=True)],
    }


def main(argv: list[str] | None = None) -> int:
    return main_for(NAME, run, __doc__ or NAME, argv)


if __name__ == "__main__":
    sys.exit(main())
