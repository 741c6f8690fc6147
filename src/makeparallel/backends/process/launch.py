"""Starting, stopping and reaping worker processes.

    start="spawn":  subprocess (fork + exec) --> python -c "...makeparallel._worker.main..."
    start="fork":   as the pool starts (no thread yet): fork the first worker and a fork
                    server; every later worker is forked by the fork server (``forkserver``)

Every worker gets a socket, its settings already waiting in it, and the
read end of the "lifeline": a pipe whose write end only this process has.
When this process dies, even by SIGKILL, the kernel closes that end, the
worker's watchdog reads end-of-file and the worker exits.

Workers are never forked straight from this process once the pool has its
I/O thread: forking a multi-threaded process can deadlock the child (Python
3.12+ warns about it). A fresh interpreter also never re-imports the user's
``__main__``; what is defined there travels by value (cloudpickle).

Only the I/O thread starts, kills and reaps workers (the pool's first ones
excepted, started before that thread exists).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from ... import _settings
from ..._worker import serialize, wire
from ..._worker.process_tree import can_list_children, kill_all, stop_descendants
from .forkserver import ForkedProcess, ForkServer, ForkServerGone, fork_worker, wait_for_child
from .workers import Process

logger = logging.getLogger("makeparallel")

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[3]); "
    "from makeparallel._worker.main import main; main(int(sys.argv[1]), int(sys.argv[2]))"
)
_PACKAGE_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
_REAP_GRACE = 5.0  # seconds a worker told to stop gets before it is killed
_FREEZE_GRACE = 0.1  # seconds to wait for a worker sent SIGSTOP to be stopped

Started = tuple[int, Process, socket.socket]  # a worker's index, process and socket

_lifeline_lock = threading.Lock()
_lifeline: tuple[int, int] | None = None


def _lifeline_read_end() -> int:
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = os.pipe()  # both ends non-inheritable; only workers get the read end
        return _lifeline[0]


def _drop_lifeline_in_child() -> None:
    # A forked child must not keep the parent's workers alive, nor share its lifeline.
    global _lifeline
    if _lifeline is not None:
        for fd in _lifeline:
            with contextlib.suppress(OSError):
                os.close(fd)
    _lifeline = None


os.register_at_fork(after_in_child=_drop_lifeline_in_child)


class Launcher:
    """Starts a pool's worker processes, fresh interpreters or forks.

    With ``start="fork"`` it forks, as it is created, the first worker
    (``first``) and a fork server holding the sockets of the other first
    workers, which it forks when told to (``hurry``) or soon after.
    """

    def __init__(
        self,
        pool_name: str,
        initializer: bytes | None,
        start: str,
        count: int,
        forward: dict[str, int] | None = None,
    ) -> None:
        self._pool_name = pool_name
        self._initializer = initializer
        self._next_index = 0
        self.server: ForkServer | None = None
        self.forking: list[tuple[int, socket.socket]] = []  # first workers on their way
        self.first: Started | None = None
        #: what forked workers' ``__main__`` has, by name (emptied once workers may be fresh)
        self.main_copy: dict[str, object] = {}
        #: modules tasks' functions come from: a new worker imports them as it starts
        self.preload: dict[str, None] = {}
        #: the logging levels workers forward records at (None: they forward nothing)
        self.forward = forward
        if start == "fork":
            self.first = self._fork_now(count)

    @property
    def shares_pages(self) -> bool:
        """Whether workers share this process's pages (forked): count their own memory only."""
        return self.server is not None or self.first is not None

    def _fork_now(self, count: int) -> Started:
        channels = [self._new_channel() for _ in range(count)]
        lifeline = _lifeline_read_end()
        first: ForkedProcess | None = None
        try:
            first = fork_worker(channels[0][2].fileno(), lifeline)
            others = [child.fileno() for _, _, child in channels[1:]]
            self.server = ForkServer(others, lifeline)
        except BaseException:  # fork failed (no memory, too many processes): leave nothing
            if first is not None:
                with contextlib.suppress(OSError):
                    first.kill()
                reap(first)
            for _, sock, _ in channels:
                sock.close()
            raise
        finally:
            for _, _, child in channels:
                child.close()
        self.forking = [(index, sock) for index, sock, _ in channels[1:]]
        index, sock, _ = channels[0]
        return index, first, sock

    def hurry(self) -> None:
        """Work waits for a worker: the fork server forks the other first workers now."""
        server = self.server  # the I/O thread drops it if it dies
        if self.forking and server is not None:
            server.go()

    def watch(self) -> int | None:
        """What to watch for first workers forked (readable), while some are on their way."""
        return self.server.fileno() if self.server is not None and self.forking else None

    def take_forked(self, wait: bool) -> tuple[list[Started], int]:
        """The first workers the fork server has forked by now (all of them, with ``wait``),
        and how many must start as fresh interpreters instead because it has gone.

        Raises OSError when the fork server failed to fork.
        """
        started: list[Started] = []
        while self.forking and self.server is not None:
            try:
                forked = self.server.started(wait)
            except ForkServerGone:
                missing = len(self.forking)
                self._without_fork_server()
                return started, missing
            except OSError:
                self._drop_forking()
                raise
            if forked is None:
                break
            index, sock = self.forking.pop(0)
            started.append((index, forked, sock))
        return started, 0

    def _without_fork_server(self) -> None:
        """The fork server has exited: new workers start as fresh interpreters.

        Forking another one now would fork this process and its threads. The
        workers the fork server forked run on; so does the pool.
        """
        server, self.server = self.server, None
        assert server is not None
        logger.warning(
            "pool %r: its fork server (pid %d) has exited; new workers start as fresh "
            "interpreters, which do not share this process's state",
            self._pool_name,
            server.pid,
        )
        server.close()
        self._drop_forking()
        self.main_copy.clear()  # fresh workers have none of it: functions go by value again

    def _drop_forking(self) -> None:
        for _, sock in self.forking:
            sock.close()
        self.forking = []

    def start(self) -> Started:
        """One more worker process (raises OSError if none can be started).

        With a fork server, take the first forked workers (``take_forked``)
        before: it answers in order.
        """
        index, parent_sock, child_sock = self._new_channel()
        try:
            proc = self._start_process(child_sock.fileno(), _lifeline_read_end())
        except OSError:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        return index, proc, parent_sock

    def _start_process(self, sock_fd: int, lifeline: int) -> Process:
        if self.server is not None:
            try:
                return self.server.start_worker(sock_fd, lifeline)
            except ForkServerGone:
                self._without_fork_server()
        return _start_fresh(sock_fd, lifeline)

    def _new_channel(self) -> tuple[int, socket.socket, socket.socket]:
        """A new worker's index and socket pair, its settings already waiting in it."""
        index = self._next_index
        self._next_index += 1
        parent_sock, child_sock = socket.socketpair()
        config = {
            "sys_path": [p or os.getcwd() for p in sys.path],
            "pool": self._pool_name,
            "index": index,
            "initializer": self._initializer,
            "ignore_sigterm": _settings.workers_ignore_sigterm,
            "authkey": parent_authkey(),
            "preload": list(self.preload),
            "forward": self.forward,
        }
        wire.send_all(parent_sock, wire.frame(wire.CONFIG, 0, (serialize.dumps(config),)))
        return index, parent_sock, child_sock

    def close(self) -> None:
        self._drop_forking()
        if self.server is not None:
            self.server.close()


def parent_authkey() -> bytes | None:
    """This process's ``multiprocessing`` authkey, once ``multiprocessing`` is loaded here.

    A fresh interpreter has a random key of its own, and would be refused by
    this process's Manager: workers take this one (``_worker.main.use_authkey``).
    """
    module = sys.modules.get("multiprocessing.process")
    return None if module is None else bytes(module.current_process().authkey)


def _start_fresh(sock_fd: int, lifeline: int) -> subprocess.Popen[bytes]:
    """A fresh interpreter holding these two descriptors, running ``_worker.main``."""
    args = [
        sys.executable,
        *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
        "-c",
        _BOOT,
        str(sock_fd),
        str(lifeline),
        _PACKAGE_ROOT,
    ]
    return subprocess.Popen(args, pass_fds=(sock_fd, lifeline), stdin=subprocess.DEVNULL)


# -- stopping and reaping ----------------------------------------------------------


def signal_worker(proc: Process, signum: int) -> bool:
    """Send ``signum``; False if the process has ended already."""
    try:
        proc.send_signal(signum)
    except OSError:
        return False
    return True


def freeze(proc: Process) -> bool:
    """Stop ``proc`` (SIGSTOP) and wait until it is stopped; False if it has ended.

    Once it is stopped nothing it does can change: every answer it wrote is in
    its socket, and it starts no further task until it is thawed.
    """
    if not signal_worker(proc, signal.SIGSTOP):
        return False
    deadline = time.monotonic() + _FREEZE_GRACE
    while True:
        state = _process_state(proc.pid)
        if state is None or state in "ZX":
            return False
        if state in "Tt" or time.monotonic() >= deadline:
            return True  # (at the deadline: stuck in the kernel; it is stopped on its way out)
        os.sched_yield()


def thaw(proc: Process) -> None:
    signal_worker(proc, signal.SIGCONT)


def kill_tree(proc: Process) -> None:
    """Kill the worker, and every process its task started (``_worker.process_tree``)."""
    started: list[int] = []
    if can_list_children() and signal_worker(proc, signal.SIGSTOP):
        # stopped, it starts no process while its descendants are found
        started = stop_descendants(proc.pid)
    signal_worker(proc, signal.SIGKILL)
    kill_all(started)


def reap(proc: Process) -> int | None:
    """Wait for a worker process to end: its returncode, None if that is lost."""
    try:
        return _wait(proc, _REAP_GRACE)
    except subprocess.TimeoutExpired:
        signal_worker(proc, signal.SIGKILL)
        return _wait(proc, None)


def _wait(proc: Process, timeout: float | None) -> int | None:
    """``proc.wait``, but None where the worker was reaped by someone else.

    ``Popen.wait`` says 0 then, as if the worker had exited normally: in a
    program that ignores SIGCHLD the system reaps every child as it ends.
    """
    if isinstance(proc, ForkedProcess):
        return proc.wait(timeout)
    returncode = wait_for_child(proc.pid, timeout)
    if returncode is not None:
        proc.returncode = returncode
    elif proc.returncode is not None:
        return proc.returncode  # Popen reaped it itself: its poll() in send_signal()
    else:
        proc.returncode = 0  # so Popen, too, knows it has ended
    return returncode


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (R, S, T, Z...), or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None
