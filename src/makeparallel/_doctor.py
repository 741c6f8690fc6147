"""``python -m makeparallel doctor``: what makeparallel sees on this machine."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

from . import __version__, _doctor_checks, api
from ._sizing import usable_cpus
from .backends import gil_enabled, resolve_kind

# What a worker process imports: their bytecode is part of every worker's start.
WORKER_MODULES = (
    "makeparallel",
    "makeparallel._worker",
    "makeparallel._worker.main",
    "makeparallel._worker.wire",
    "makeparallel._worker.serialize",
    "makeparallel._worker.state",
    "makeparallel._worker.context",
    "makeparallel._worker.chunk",
    "makeparallel._worker.process_tree",
    "makeparallel._worker.forward",
    "makeparallel._worker.on_import",
    "makeparallel._worker.shared_main",
)


def _echo(x: int) -> int:
    return x


def bytecode_is_current(source: Path) -> bool:
    """Whether ``source`` has a ``.pyc`` that this interpreter would load as it is.

    Reads the header that PEP 552 describes: the magic number, then either the
    source's mtime and size or a hash of the source.
    """
    try:
        with open(importlib.util.cache_from_source(str(source)), "rb") as cached:
            header = cached.read(16)
        stat = source.stat()
    except (OSError, NotImplementedError):
        return False
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    flags = int.from_bytes(header[4:8], "little")
    if flags == 0:  # checked against the source's mtime and size
        mtime = int.from_bytes(header[8:12], "little")
        size = int.from_bytes(header[12:16], "little")
        return mtime == int(stat.st_mtime) & 0xFFFFFFFF and size == stat.st_size & 0xFFFFFFFF
    if not flags & 0b10:  # a hash the interpreter does not check
        return True
    return header[8:16] == importlib.util.source_hash(source.read_bytes())


def _worker_bytecode() -> str:
    sources = []
    for name in WORKER_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            sources.append(Path(spec.origin))
    stale = [s for s in sources if not bytecode_is_current(s)]
    if not stale:
        return f"current for the {len(sources)} modules a worker imports"
    return (
        f"missing or out of date for {len(stale)} of the {len(sources)} modules a worker "
        "imports, and not written on import (PYTHONDONTWRITEBYTECODE, or a read-only "
        "install): every new worker compiles them, several ms of its start; "
        f"python -m compileall {stale[0].parent} writes them"
    )


def run() -> int:
    import cloudpickle  # type: ignore[import-untyped]

    print(f"makeparallel {__version__}")
    print(f"python       {platform.python_implementation()} {sys.version.split()[0]}")
    print(f"executable   {sys.executable}")
    print(f"GIL          {'enabled' if gil_enabled() else 'disabled (free-threaded build)'}")
    print(f"cpu_count    {os.cpu_count()} (machine)")
    print(f"usable CPUs  {usable_cpus()} (affinity and cgroup quota)")
    print(f"auto engine  {resolve_kind('auto')}")
    print(f"cloudpickle  {cloudpickle.__version__}")
    print(f"bytecode     {_worker_bytecode()}")
    print(f"  writing    {_doctor_checks.bytecode_writing()}")
    print(f"start method {_doctor_checks.start_method()}")
    print(f"__main__     {_doctor_checks.main_module()}")
    print(f"extras       {_doctor_checks.extras()}")
    found = _doctor_checks.hazards()
    print(f"hazards      {'none known' if not found else found[0]}")
    for hazard in found[1:]:
        print(f"             {hazard}")
    started = time.perf_counter()
    pool = api.default_pool()
    ok = pool.submit(_echo, 42).result(timeout=60) == 42
    print(f"smoke test   {'ok' if ok else 'FAILED'} ({time.perf_counter() - started:.2f} s)")
    return 0 if ok else 1
