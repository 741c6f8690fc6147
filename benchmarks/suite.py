"""The whole benchmark suite in one command: every workload, one JSON report, tables and plots.

    python benchmarks/suite.py [--quick | --smoke] [--only overhead,scaling] [--out FILE]
    python benchmarks/suite.py --show FILE         # the markdown tables of a saved run
    python benchmarks/suite.py --plot FILE         # its PNG plots (into --images DIR)
    python benchmarks/suite.py --write-docs FILE   # docs/benchmarks.md's block + docs/img + README

Runs, in this order: the CPU-bound comparison of ``run.py`` (coarse tasks,
every peer), per-task overhead / round trip / cold start (``overhead.py``),
a map over many tiny items (``tiny_items.py``), a lazy map over a 10-million
item generator (``streaming.py``), large arguments (``data_transfer.py``),
compiling the standard library (``real_workload.py``), I/O-bound sleeps on
threads (``io_bound.py``), scaling over worker counts (``scaling.py``) and
whole programs, each in a fresh interpreter timed from start to exit
(``whole_program.py``).
Each script also runs alone, with the same options.

A run writes ``benchmarks/results/suite.json`` (or ``--out``), prints the
markdown tables and writes the plots next to the JSON, into ``img/``. The
docs are filled from a saved JSON with ``--write-docs``, never by hand.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data_transfer
import io_bound
import overhead
import real_workload
import render
import report
import run as cpu_comparison
import scaling
import streaming
import tiny_items
import whole_program
from machine import CpuMeter, wait_for_idle

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = report.RESULTS / "suite.json"
DOC = HERE.parent / "docs" / "benchmarks.md"
README = HERE.parent / "README.md"
BENCHMARKS: dict[str, report.Run | None] = {
    "cpu": None,  # run.py's comparison, which has its own format (see run_cpu below)
    overhead.NAME: overhead.run,
    tiny_items.NAME: tiny_items.run,
    streaming.NAME: streaming.run,
    data_transfer.NAME: data_transfer.run,
    real_workload.NAME: real_workload.run,
    io_bound.NAME: io_bound.run,
    scaling.NAME: scaling.run,
    whole_program.NAME: whole_program.run,
}


def run_cpu(size: str, repetitions: int, with_mp020: bool) -> report.Section:
    seconds = cpu_comparison.SMOKE_TASK_SECONDS if size == "smoke" else cpu_comparison.TASK_SECONDS
    section = cpu_comparison.run_cpu(repetitions, seconds, with_mp020 and size != "smoke")
    section["title"] = "CPU-bound coarse tasks"
    return section


def run_suite(
    names: list[str],
    size: str,
    repetitions: int,
    with_mp020: bool,
    wait_idle: float,
    command: list[str],
) -> dict[str, Any]:
    """Run the benchmarks ``names`` one after the other; a failing one is recorded, not fatal."""
    started, meter = time.perf_counter(), CpuMeter()
    result = report.new_report(["benchmarks/suite.py", *command], size)
    for name in names:
        if wait_idle > 0:
            wait_for_idle(wait_idle)
        print(f"== {name}", file=sys.stderr)
        try:
            benchmark = BENCHMARKS[name]
            if benchmark is None:
                section = run_cpu(size, repetitions, with_mp020)
            else:
                section = benchmark(size, repetitions)
        except Exception as exc:  # one broken benchmark must not cost the others' results
            traceback.print_exc()
            section = {"title": name, "error": f"{type(exc).__name__}: {exc}"}
        result["benchmarks"][name] = section
    report.finish_report(result, started, meter)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = report.arguments(__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--no-mp020", action="store_true", help="skip makeparallel 0.2.0 in the CPU comparison"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each benchmark, wait up to SECONDS for 95%% idle CPUs",
    )
    parser.add_argument("--images", type=Path, help="where plots go (default: next to the JSON)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the page --write-docs fills")
    parser.add_argument(
        "--readme", type=Path, default=README, help="whose summary table --write-docs fills"
    )
    saved = parser.add_mutually_exclusive_group()
    saved.add_argument("--show", type=Path, metavar="JSON", help="print a saved run's tables")
    saved.add_argument("--plot", type=Path, metavar="JSON", help="plot a saved run")
    saved.add_argument(
        "--write-docs",
        type=Path,
        metavar="JSON",
        help="fill docs/benchmarks.md's generated block and docs/img from a saved run",
    )
    args = parser.parse_args(argv)
    if args.show:
        print(render.markdown(report.load(args.show), images=None), end="")
        return 0
    if args.plot:
        images = args.images or args.plot.parent / "img"
        for path in render.plot(report.load(args.plot), images):
            print(f"written: {path.name}", file=sys.stderr)
        return 0
    if args.write_docs:
        images = args.images or args.doc.parent / "img"
        saved = report.load(args.write_docs)
        written = render.write_docs(saved, args.doc, images)
        render.write_summary(saved, args.readme)
        print(
            f"written: {args.doc.name}, {args.readme.name} and {len(written)} plots",
            file=sys.stderr,
        )
        return 0

    size, repetitions = report.size_and_repetitions(parser, args)
    names = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        known = ", ".join(BENCHMARKS)
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {known}")
    out: Path = args.out or DEFAULT_OUT
    command = sys.argv[1:] if argv is None else argv
    result = run_suite(names, size, repetitions, not args.no_mp020, args.wait_idle, command)
    report.write(result, out)
    images = args.images or out.parent / "img"
    print(render.markdown(result, images=None), end="")
    plots = render.plot(result, images)
    failed = [name for name, section in result["benchmarks"].items() if "error" in section]
    print(
        f"\nwritten: {out.name} and {len(plots)} plots ({result['duration_s']} s)"
        + (f"; failed: {', '.join(failed)}" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
