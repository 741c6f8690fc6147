"""The JSON report the suite's benchmarks write, and the command line they share.

    python benchmarks/NAME.py [--quick | --smoke] [--repetitions N] [--out FILE]

A report holds the machine, the mode, and one section per benchmark; a
section holds tables; a table holds one row per contender with the median,
min and max of its samples. ``render.py`` turns a saved report into markdown
and plots, so every published figure comes from a file a run wrote, never
from numbers typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import PEERS, CpuMeter, compile_bytecode, describe_machine, makeparallel_fingerprint
from measure import REPETITIONS, Row

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCHEMA = 1
SUITE_PEERS = (*PEERS, "numpy", "matplotlib")

Section = dict[str, Any]
Run = Callable[[str, int], Section]  # (size: full | quick | smoke, repetitions) -> section


def table(
    key: str,
    title: str,
    rows: list[Row],
    *,
    unit: str,
    scale: float = 1.0,
    what: str,
    figures: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A table of one figure: ``rows`` summarised in ``unit`` (seconds x ``scale``).

    ``figures`` names the rows' other figures (e.g. ``{"rss_mib": "peak RSS
    growth (MiB)"}``), shown as extra columns.
    """
    return {
        "key": key,
        "title": title,
        "unit": unit,
        "what": what,
        "figures": figures or {},
        "rows": [row.summary(scale) for row in rows],
    }


def rounds(repetitions: int) -> str:
    """How a table's samples were taken, for its description."""
    if repetitions == 1:
        return "1 round"
    return f"{repetitions} rounds, contenders alternating, in a new order each round"


def add_ratio(
    out: dict[str, Any], label: str, reference: float | None, *, speedup: bool
) -> dict[str, Any]:
    """Give each row of a table a ratio to ``reference`` (a median in the table's unit).

    ``speedup``: reference / row (higher is better); otherwise row / reference
    (how many times the reference the row took).
    """
    out["ratio_label"] = label
    for row in out["rows"]:
        median = row.get("median")
        if reference and median:
            row["ratio"] = round(reference / median if speedup else median / reference, 3)
    return out


def median_of(out: dict[str, Any], key: str) -> float | None:
    """The median of the row ``key`` of a table, if it has one."""
    row = next((r for r in out["rows"] if r["key"] == key), None)
    return None if row is None else row.get("median")


def new_report(command: list[str], mode: str) -> dict[str, Any]:
    """An empty report describing this machine; first brings the ``.pyc`` files up to date."""
    machine = describe_machine(SUITE_PEERS)
    machine["bytecode_compiled"] = compile_bytecode()
    return {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *command]),
        "mode": mode,
        "machine": machine,
        "benchmarks": {},
    }


def finish_report(report: dict[str, Any], started: float, meter: CpuMeter) -> None:
    report["duration_s"] = round(time.perf_counter() - started, 1)
    machine = report["machine"]
    machine["foreign_cpu_share_during_run"] = meter.share()
    machine["makeparallel_source_sha256_after"] = makeparallel_fingerprint()
    if machine["makeparallel_source_sha256_after"] != machine["makeparallel_source_sha256"]:
        print(
            "warning: makeparallel's source files changed during the run; the figures mix versions",
            file=sys.stderr,
        )


def write(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2 repetitions, smaller sizes")
    size.add_argument("--smoke", action="store_true", help="1 repetition at a tiny size (tests)")
    parser.add_argument("--repetitions", type=int, help="default: 5, --quick 2, --smoke 1")
    parser.add_argument("--out", type=Path, help="the JSON report to write")
    return parser


def size_and_repetitions(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[str, int]:
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    repetitions = REPETITIONS[size] if args.repetitions is None else args.repetitions
    if repetitions < 1:
        parser.error("--repetitions must be >= 1")
    return size, repetitions


def main_for(name: str, run: Run, doc: str, argv: list[str] | None) -> int:
    """The ``main`` of one benchmark script: run it, write its report, print its tables."""
    import render

    parser = arguments(doc.split("\n\n", maxsplit=1)[0])
    args = parser.parse_args(argv)
    size, repetitions = size_and_repetitions(parser, args)
    out: Path = args.out or RESULTS / f"{name}.json"
    started, meter = time.perf_counter(), CpuMeter()
    argv_used = sys.argv[1:] if argv is None else argv
    report = new_report([f"benchmarks/{name}.py", *argv_used], size)
    report["benchmarks"][name] = run(size, repetitions)
    finish_report(report, started, meter)
    write(report, out)
    print(render.markdown(report, images=None))
    print(f"\nwritten: {out.name} ({report['duration_s']} s)", file=sys.stderr)
    return 0
