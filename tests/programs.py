"""Programs the tests write out and run in a fresh interpreter, as a user's script runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def write_program(path: Path, source: str) -> None:
    path.write_text(textwrap.dedent(source))


def run_program(
    script: Path, *options: str, args: tuple[str, ...] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter with these options and arguments; it must succeed."""
    done = subprocess.run(
        [sys.executable, *options, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done
