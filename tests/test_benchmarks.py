"""Every benchmark script runs once at a tiny size, so the scripts cannot rot.

No timing is asserted here: figures belong to the benchmark runs themselves.
Each script runs in a fresh interpreter, as a user would run it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


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
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / command[0]), *command[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
