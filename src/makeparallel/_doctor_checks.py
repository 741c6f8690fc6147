"""What ``python -m makeparallel doctor`` checks besides versions: the facts that
decide how workers start and the hazards known to break them.

Each check returns one line of text; none starts a pool.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading

from . import _settings
from ._arguments import resolve_start, why_not_fork

# extra name -> the module it installs
EXTRAS = {
    "names": "setproctitle",
    "memory": "psutil",
    "prometheus": "prometheus_client",
    "statsd": "statsd",
    "otel": "opentelemetry",
}
LOW_FILE_LIMIT = 1024  # each process worker holds a few descriptors; pools multiply them


def start_method() -> str:
    chosen = resolve_start("auto")
    why = why_not_fork()
    if why is None:
        return f'{chosen} (start="auto" forks this process: nothing known makes it unsafe)'
    return f'{chosen} (start="auto" starts fresh interpreters: {why})'


def main_module() -> str:
    """Whether a fresh worker interpreter can import what ``__main__`` defines."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None):
        return f"importable by workers (run as module {spec.name})"
    if path and os.path.exists(path):
        return f"importable by workers (script {path})"
    return (
        "not importable by fresh workers (interactive session, notebook or -c): functions "
        "defined here travel by value with cloudpickle, and spawned workers cannot import it"
    )


def bytecode_writing() -> str:
    if sys.dont_write_bytecode:
        source = (
            "PYTHONDONTWRITEBYTECODE is set"
            if os.environ.get("PYTHONDONTWRITEBYTECODE")
            else "sys.dont_write_bytecode is True"
        )
        return f"not written ({source}): fresh workers may compile modules on every start"
    return "written on import (sys.dont_write_bytecode is False)"


def extras() -> str:
    found = []
    for extra, module in EXTRAS.items():
        present = importlib.util.find_spec(module) is not None
        found.append(f"{extra} {'yes' if present else 'no'}")
    return ", ".join(found)


def hazards() -> list[str]:
    """Known hazards for worker processes, each with what to do; empty when none."""
    found = []
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        found.append(
            f"{len(others)} other thread(s) alive ({', '.join(others[:3])}): a pool with "
            'start="fork" would copy their held locks; start="auto" spawns instead'
        )
    chld = getattr(signal, "SIGCHLD", None)
    if chld is not None:
        handler = signal.getsignal(chld)
        if handler not in (signal.SIG_DFL, None):
            found.append(
                "a SIGCHLD handler is installed (or SIGCHLD is ignored): worker exit "
                "statuses may be reaped before the pool reads them"
            )
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        soft = -1
    if 0 <= soft < LOW_FILE_LIMIT:
        found.append(
            f"open-files limit is {soft}: many workers or pools may run out of descriptors "
            "(raise it with ulimit -n)"
        )
    if _settings.debug:
        found.append("debug mode is on (MAKEPARALLEL_DEBUG): every task runs inline")
    return found
