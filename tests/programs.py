"""Programs the tests run in a fresh interpreter, as a user's script or command runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run_python(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a fresh interpreter, its output captured; it must succeed."""
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def write_program(path: Path, source: str) -> None:
    path.write_text(textwrap.dedent(source))


def run_program(
    script: Path, *options: str, args: tuple[str, ...] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with these interpreter options and arguments; it must succeed."""
    return run_python(*options, str(script), *args, timeout=timeout)
