"""Every benchmark script runs once at a tiny size, so the scripts cannot rot.

No timing is asserted here: figures belong to the benchmark runs themselves.
Each script runs in a fresh interpreter, as a user would run it. The suite's
scripts write their JSON report, and the tests check that it has a row for
every contender, that every makeparallel row measured something, and that
no contender failed (a peer that is not installed is "skipped", not failed).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
DOCS = BENCHMARKS.parent / "docs"

# Each suite script, its tables, and the contenders each table must list.
SUBMITTING = {"ppe", "mp_pool", "pebble", "loky", "makeparallel", "makeparallel_quiet"}
WHOLE_PROGRAM_POOLS = {"makeparallel", "makeparallel_fork", "ppe_fork", "ppe_spawn"}
WHOLE_PROGRAM_MAPS = WHOLE_PROGRAM_POOLS | {"serial", "ppe_forkserver", "mp_pool", "joblib"}
EXPECTED_ROWS = {
    "overhead": {
        "per_task": SUBMITTING,
        "round_trip": SUBMITTING | {"floor_socket", "floor_polling", "floor_thread"},
        "cold_start": {
            "ppe_fork",
            "ppe_forkserver",
            "ppe_spawn",
            "mp_pool",
            "pebble",
            "loky",
            "makeparallel",
            "makeparallel_spawn",
            "makeparallel_fork",
            "floor_interpreter",
        },
    },
    "tiny_items": {
        "map": {
            "serial",
            "ppe",
            "mp_pool",
            "joblib",
            "mpire",
            "makeparallel_map",
            "makeparallel_map_again",
            "makeparallel_pool_map",
        }
    },
    "streaming": {"imap": {"makeparallel", "makeparallel_peer_size", "ppe", "mp_pool"}},
    "data_transfer": {
        "bytes": {"ppe", "mp_pool", "loky", "makeparallel"},
        "numpy": {"ppe", "mp_pool", "loky", "makeparallel"},
    },
    "real_workload": {"compile_stdlib": {"serial", "ppe", "mp_pool", "joblib", "makeparallel_map"}},
    "io_bound": {"sleeps": {"thread_pool_executor", "makeparallel"}},
    "scaling": {
        "speedup": {"serial"}
        | {f"{library}_{n}" for library in ("ppe", "makeparallel") for n in (1, 2, 4)}
    },
    "whole_program": {
        "compile_stdlib": WHOLE_PROGRAM_MAPS,
        "ppe_chunksize": {
            f"ppe_{method}_{chunksize}"
            for method in ("fork", "forkserver", "spawn")
            for chunksize in (1, 4, 16, 64)
        },
        "short_script": WHOLE_PROGRAM_MAPS,
        "first_batch": WHOLE_PROGRAM_POOLS,
        "cold_start": {
            "makeparallel",
            "makeparallel_spawn",
            "ppe_fork",
            "ppe_forkserver",
            "ppe_spawn",
        },
        "parent_import": {"makeparallel", "ppe", "mp_pool", "joblib", "floor"},
        "global_submits": WHOLE_PROGRAM_POOLS,
        "global_map": WHOLE_PROGRAM_POOLS,
    },
}


def run_script(*command: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / command[0]), *command[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


@pytest.mark.parametrize(
    "command",
    [
        ["run.py", "--smoke"],
        ["lifecycle.py", "--smoke"],
        ["start_methods.py", "--repeats", "1"],
        ["failure_modes.py", "--wait", "1"],
    ],
    ids=["cpu-and-peers", "lifecycle", "start-methods", "failure-modes"],
)
def test_benchmark_script_runs(command: list[str]) -> None:
    run_script(*command)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cold_profile_counts_what_each_pool_does(tmp_path: Path) -> None:
    out = tmp_path / "cold.json"
    run_script("cold_profile.py", "--rounds", "1", "--out", str(out))
    rows = {row["key"]: row for row in json.loads(out.read_text())["rows"]}
    assert {k: r["status"] for k, r in rows.items()} == dict.fromkeys(
        ("ppe_fork", "makeparallel_fork", "makeparallel_spawn"), "ok"
    )
    # what is known of each pool: how it starts its workers
    assert rows["makeparallel_spawn"]["forks"] == 0
    assert rows["makeparallel_fork"]["forks"] == 2  # the first worker and the fork server
    assert rows["ppe_fork"]["forks"] == 2
    assert rows["makeparallel_spawn"]["threads"] == 1  # the I/O thread
    # the fork server forks the second worker after the first answer, or 5 ms
    assert rows["makeparallel_fork"]["processes"] in (2, 3)
    for row in rows.values():
        assert row["processes"] >= 2
        assert min(row["faults"], row["pool_faults"], row["pool_cpu"]) > 0


def check_section(name: str, section: dict[str, object]) -> None:
    tables = {t["key"]: t for t in section["tables"]}  # type: ignore[attr-defined]
    assert set(tables) == set(EXPECTED_ROWS[name])
    for key, expected in EXPECTED_ROWS[name].items():
        rows = {row["key"]: row for row in tables[key]["rows"]}
        assert set(rows) == expected, key
        failed = {k: row["note"] for k, row in rows.items() if row["status"] == "error"}
        assert failed == {}, key
        for k, row in rows.items():
            if k.startswith("makeparallel"):
                assert row["status"] == "ok", (key, row)
                assert len(row["samples"]) == 1
                assert row["min"] <= row["median"] <= row["max"]


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_suite_benchmark_reports_every_contender(name: str, tmp_path: Path) -> None:
    out = tmp_path / f"{name}.json"
    result = run_script(f"{name}.py", "--smoke", "--out", str(out))
    report = json.loads(out.read_text())
    assert report["mode"] == "smoke"
    assert report["machine"]["usable_cpus"] >= 1
    check_section(name, report["benchmarks"][name])
    assert "| Contender |" in result.stdout


def test_suite_runs_renders_and_fills_the_docs(tmp_path: Path) -> None:
    out = tmp_path / "suite.json"
    run_script("suite.py", "--smoke", "--only", "io_bound,scaling", "--out", str(out))
    report = json.loads(out.read_text())
    assert list(report["benchmarks"]) == ["io_bound", "scaling"]
    for name, section in report["benchmarks"].items():
        check_section(name, section)
    assert (tmp_path / "img" / "bench-scaling-speedup.png").stat().st_size > 0

    shown = run_script("suite.py", "--show", str(out)).stdout
    assert "### I/O-bound tasks on threads" in shown
    assert "makeparallel Pool, 2 workers" in shown

    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    shutil.copy(DOCS / "benchmarks.md", doc)
    readme = tmp_path / "README.md"
    shutil.copy(DOCS.parent / "README.md", readme)
    run_script("suite.py", "--write-docs", str(out), "--doc", str(doc), "--readme", str(readme))
    summary = readme.read_text()
    assert summary.count("<!-- summary:begin -->") == 1
    assert "| 200 sleeps of 10 ms on 32 threads (ms) |" in summary
    filled = doc.read_text()
    assert filled.count("<!-- suite:begin -->") == 1
    assert filled.count("<!-- suite:end -->") == 1
    assert "![Speed-up over the number of workers" in filled
    assert (doc.parent / "img" / "bench-io-bound-sleeps.png").exists()
    # Everything outside the generated block is left as it was.
    before = (DOCS / "benchmarks.md").read_text()
    assert filled.split("<!-- suite:begin -->")[0] == before.split("<!-- suite:begin -->")[0]
    assert filled.split("<!-- suite:end -->")[1] == before.split("<!-- suite:end -->")[1]


def test_soak_reports_what_it_found() -> None:
    """A few hundred tasks of the fault mix: one summary line, and an exit status that
    says whether it found anything (what it finds is tests/test_fault_model.py's to judge)."""
    command = ["--tasks", "300", "--seed", "1", "--wave", "300", "--deadline", "5"]
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "soak.py"), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr
    summary, threads = result.stdout.splitlines()
    match = re.fullmatch(r"300 tasks: lost (\d+), wrong (\d+), orphans (\d+)", summary)
    assert match is not None, summary
    assert threads.startswith("pool threads: ")
    clean = not any(int(n) for n in match.groups()) and "none seen spinning, none left" in threads
    assert result.returncode == (0 if clean else 1), result.stdout + result.stderr
