"""The pytest plugin (entry point ``pytest11``: ``makeparallel``).

    --mp-backend=serial|thread|process   (ini: mp_backend)   the engine of the whole run
    @pytest.mark.makeparallel(backend=..., check_pickle=...)  one test's engine
    fixtures: mp_serial, mp_pool, mp_no_leaks, mp_events

``mp.configure`` settings a test changes are put back after it. Importing
this module imports pytest and nothing else: makeparallel itself is loaded
when a fixture or hook first needs it, and no thread or process starts
before a test asks for one.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    import makeparallel as mp
    from makeparallel._options import BackendName
    from makeparallel.observe.events import TaskEvent

BACKENDS = ("serial", "thread", "process")
SHUTDOWN_DEADLINE = 10.0  # seconds a fixture's pool may take to stop
LEAK_DEADLINE = 6.0  # seconds left-over workers and threads may take to end (a pool's
# timer thread leaves 5 s after its last callback)
PROCESS_WIDE_THREADS = ("makeparallel-events",)  # one per process, by design: not a leak


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("makeparallel")
    group.addoption(
        "--mp-backend",
        choices=BACKENDS,
        default=None,
        help="run makeparallel tasks on this engine in every test: serial (inline, "
        "pickle-checked), thread or process",
    )
    parser.addini("mp_backend", "default of --mp-backend (serial, thread or process)")


def pytest_configure(config: pytest.Config) -> None:
    chosen = _session_backend(config)  # a wrong ini value stops the run before any test
    if chosen in ("thread", "process"):  # once for the run (serial is a mode, set per test)
        import makeparallel as mp

        mp.configure(backend=chosen)
    config.addinivalue_line(
        "markers",
        "makeparallel(backend=None, check_pickle=True): run this test's makeparallel tasks "
        "on that engine ('serial', 'thread' or 'process'); see makeparallel docs/testing.md",
    )


def _session_backend(config: pytest.Config) -> BackendName | None:
    chosen = config.getoption("mp_backend", None) or config.getini("mp_backend") or None
    if chosen is not None and chosen not in BACKENDS:
        raise pytest.UsageError(
            f"mp_backend = {chosen!r} in the ini file: use one of {', '.join(BACKENDS)}"
        )
    return cast("BackendName | None", chosen)


def _configuration() -> tuple[Any, ...]:
    from makeparallel import _settings, api

    return (
        api._default_workers,
        api._default_backend,
        api._default_start,
        _settings.exit_timeout,
        _settings.debug,
        _settings.inline_mode,
    )


def _restore(saved: tuple[Any, ...]) -> None:
    from makeparallel import _inline_modes, _settings, api

    if _configuration() == saved:
        return
    workers, backend, start, exit_timeout, debug, inline = saved
    _inline_modes.set_debug(debug)
    _settings.inline_mode = inline
    api.configure(workers=workers, backend=backend, start=start, exit_timeout=exit_timeout)


def _mode_for(backend: str | None, check_pickle: bool) -> tuple[Any, BackendName | None]:
    """The testing mode (serial) or the default pool's engine (thread, process) to use."""
    if backend is None:
        return None, None
    if backend not in BACKENDS:
        raise pytest.UsageError(
            f"@pytest.mark.makeparallel(backend={backend!r}): use one of {', '.join(BACKENDS)}"
        )
    if backend == "serial":
        from makeparallel import testing

        return testing.serial(check_pickle=check_pickle), None
    return None, cast("BackendName", backend)


@pytest.fixture(autouse=True)
def _mp_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Apply --mp-backend and the marker; put back what the test changed of mp.configure."""
    marker = request.node.get_closest_marker("makeparallel")
    session = _session_backend(request.config)
    if marker is None and session is None and "makeparallel" not in sys.modules:
        yield  # a test that never loads makeparallel pays nothing
        return
    if marker is not None and marker.args:
        raise pytest.UsageError("@pytest.mark.makeparallel takes keyword arguments only")
    options = dict(marker.kwargs) if marker is not None else {}
    unknown = set(options) - {"backend", "check_pickle"}
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.makeparallel: unknown argument(s) {sorted(unknown)}; "
            "it takes backend= and check_pickle="
        )
    backend = options.get("backend", session if session == "serial" else None)
    mode, engine = _mode_for(backend, bool(options.get("check_pickle", True)))
    saved = _configuration()
    if engine is not None:
        import makeparallel as mp

        mp.configure(backend=engine)
    if mode is not None:
        mode.start()
    try:
        yield
    finally:
        if mode is not None:
            mode.stop()
        _restore(saved)


@pytest.fixture
def mp_serial() -> Iterator[Any]:
    """Every makeparallel task of the test runs inline, pickle-checked (``mp.testing.serial``)."""
    from makeparallel import testing

    with testing.serial() as mode:
        yield mode


@pytest.fixture
def mp_pool(request: pytest.FixtureRequest) -> Iterator[mp.Pool]:
    """A real pool of 2 workers (the --mp-backend engine, else ``auto``), shut down after
    the test with a deadline: a task still running then is stopped."""
    import makeparallel as mp

    backend = _session_backend(request.config)
    pool = mp.Pool(workers=2, backend=backend or "auto", name="pytest-mp-pool")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_pending=True, timeout=SHUTDOWN_DEADLINE)


def _children() -> set[int]:
    pids: set[int] = set()
    try:
        threads = os.listdir("/proc/self/task")
    except OSError:
        return pids  # not Linux: only threads are checked
    for thread in threads:
        try:
            with open(f"/proc/self/task/{thread}/children") as listing:
                pids.update(int(pid) for pid in listing.read().split())
        except OSError:
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def mp_no_leaks() -> Iterator[None]:
    """Fail the test if it leaves a worker process or a thread running.

    Whatever started during the test must have ended at most a few seconds
    after it: shut down the pools the test makes (a ``with`` block), and the
    default pool with ``mp.shutdown()`` if the test used it.
    """
    threads_before = set(threading.enumerate())
    children_before = _children()
    yield
    deadline = time.monotonic() + LEAK_DEADLINE

    def new_threads() -> list[threading.Thread]:
        return [
            thread
            for thread in set(threading.enumerate()) - threads_before
            if thread.name not in PROCESS_WIDE_THREADS
        ]

    for thread in new_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    left = {pid for pid in _children() - children_before if _alive(pid)}
    pause = threading.Event()  # never set: a bounded wait between looks at /proc
    while left and time.monotonic() < deadline:  # another's processes cannot be waited for
        pause.wait(0.01)
        left = {pid for pid in left if _alive(pid)}
    threads = sorted(thread.name for thread in new_threads())
    if left or threads:
        pytest.fail(
            "the test left "
            + "; ".join(
                part
                for part in (
                    f"worker process(es) {sorted(left)}" if left else "",
                    f"thread(s) {threads}" if threads else "",
                )
                if part
            )
            + ". Shut down every pool the test creates (use `with mp.Pool(...)`), and call "
            "mp.shutdown() if it used the default pool",
            pytrace=False,
        )


class EventLog:
    """The ``TaskEvent``s recorded by ``mp_events``."""

    def __init__(self) -> None:
        self._events: list[TaskEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: TaskEvent) -> None:
        with self._lock:
            self._events.append(event)

    @property
    def events(self) -> list[TaskEvent]:
        """Every event so far (after waiting, at most 10 s, for those on their way)."""
        from makeparallel.observe.events import flush_events

        flush_events(timeout=10.0)
        with self._lock:
            return list(self._events)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def of(self, kind: str) -> list[TaskEvent]:
        return [event for event in self.events if event.kind == kind]


@pytest.fixture
def mp_events() -> Iterator[EventLog]:
    """Records every makeparallel ``TaskEvent`` of the test (``.events``, ``.kinds()``,
    ``.of("finished")``)."""
    import makeparallel as mp

    log = EventLog()
    mp.add_listener(log)
    try:
        yield log
    finally:
        mp.remove_listener(log)
