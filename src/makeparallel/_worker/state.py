"""Whether this interpreter is a makeparallel worker process."""

from __future__ import annotations

import os

_ENV = "MAKEPARALLEL_WORKER"


def in_worker() -> bool:
    return os.environ.get(_ENV) == str(os.getpid())


def mark_worker() -> None:
    os.environ[_ENV] = str(os.getpid())
