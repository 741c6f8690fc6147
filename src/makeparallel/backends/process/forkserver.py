"""Worker processes forked from this one: ``Pool(start="fork")``.

    pool starts, no thread of its own yet:
      parent --fork--> first worker
      parent --fork--> fork server (holding the other first workers' sockets) --fork--> them
    later, whenever a worker is needed (the parent has threads now):
      parent --"one more" + its socket and lifeline (SCM_RIGHTS)--> fork server --fork--> worker
    their pids, and later their exit statuses, come back over the control socket

A fresh interpreter costs at least ``python -c pass`` to start; a fork costs
a copy of the page tables. Forking a process that has other threads copies
whatever they were doing - a lock one of them held stays held for ever in
the child - and a pool has an I/O thread. So a pool forks one *fork server*
before it starts that thread, and every later worker is forked from that
single-threaded copy: all of them see this process as it was when the pool
started. Only the first worker is forked straight from this process, so the
first result does not wait for two forks in a row. The fork server is the
other workers' parent, so it reaps them and reports how each ended.

Every process forked here lets go of the pipes and sockets it inherited
(they point at ``/dev/null`` instead), so that a pipe this process closes
still reaches EOF at its other end, and resets the signal handlers set in
Python. The fork server exits when this process closes its end of the
control socket (the pool shut down, or this process died), once the workers
it forked have ended.
"""

from __future__ import annotations

import errno
import gc
import math
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from ..._worker.wire import drain_pipe

_RECORD = struct.Struct("=cii")  # kind, pid, value
_STARTED = b"P"  # value unused
_FAILED = b"F"  # value: errno of the failed fork
_EXITED = b"X"  # value: returncode as subprocess reports it (-signal or exit code)
_CLOSE_GRACE = 2.0  # seconds the fork server gets to exit once told to
_FIRST_WAIT = 0.005  # seconds the fork server leaves the first worker the machine


def fork_worker(sock_fd: int, lifeline_fd: int) -> ForkedProcess:
    """Fork a worker straight from this process (only while it has one thread)."""

    def child(lifeline: int) -> NoReturn:
        _in_child(lambda: _become_quiet_copy({sock_fd, lifeline}), sock_fd, lifeline)

    return ForkedProcess(_fork(lifeline_fd, child), None)


class ForkServerGone(OSError):
    """The fork server has exited (killed, say): it forks no more workers."""


class ForkServer:
    """The parent's handle on one fork server; every method may block briefly.

    Created while this process has one thread. The server forks a worker for
    each socket in ``first`` when told to (``go``), or 5 ms after it started;
    ``started`` returns them in order.
    """

    def __init__(self, first: list[int], lifeline_fd: int) -> None:
        parent_end, server_end = socket.socketpair()
        self.pid = _fork(lifeline_fd, lambda lifeline: _serve(server_end.fileno(), first, lifeline))
        server_end.close()
        self._sock = parent_end
        self._lock = threading.Lock()
        self._exits: dict[int, int] = {}  # pid -> returncode, reported and not yet claimed
        self._pending = bytearray()
        self._gone = False
        self._told_to_go = False

    def start_worker(self, sock_fd: int, lifeline_fd: int) -> ForkedProcess:
        """Have the server fork a worker holding these two descriptors."""
        with self._lock:
            if self._gone:
                raise ForkServerGone("the pool's fork server has exited")
            try:
                socket.send_fds(self._sock, [b"S"], [sock_fd, lifeline_fd])
            except OSError as problem:
                self._gone = True
                raise ForkServerGone(f"the pool's fork server has exited ({problem})") from problem
        started = self.started(wait=True)
        assert started is not None
        return started

    def go(self) -> None:
        """The first worker has answered, or a task waits: the server forks the others now."""
        with self._lock:
            if not (self._told_to_go or self._gone):
                self._told_to_go = True
                try:
                    self._sock.send(b"G")
                except OSError:
                    self._gone = True  # the I/O thread learns it as it waits for the workers

    def fileno(self) -> int:
        """Readable when the fork server has news: a worker forked, or one ended."""
        return self._sock.fileno()

    def started(self, wait: bool) -> ForkedProcess | None:
        """The worker forked for the oldest request not yet answered.

        None if it is not forked yet and ``wait`` is false.
        """
        with self._lock:
            while True:
                kind, pid, value = self._next_record(None if wait else 0.0)
                if kind == _STARTED:
                    return ForkedProcess(pid, self)
                if kind == _FAILED:
                    raise OSError(value, f"fork failed: {os.strerror(value)}")
                if self._gone:
                    raise ForkServerGone("the pool's fork server has exited")
                if not kind and not wait:
                    return None

    def wait(self, pid: int, timeout: float | None) -> int | None:
        """The returncode of worker ``pid`` once it has ended.

        None if the fork server is gone and can no longer say; raises
        ``subprocess.TimeoutExpired`` if the worker is still running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while pid not in self._exits:
                if self._gone:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"worker {pid}", timeout or 0.0)
                self._next_record(left)
            return self._exits.pop(pid)

    def close(self) -> None:
        """Let the fork server exit and reap it; workers still running end on their own."""
        with self._lock:
            self._gone = True
            self._sock.close()
        try:
            wait_for_child(self.pid, _CLOSE_GRACE)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            wait_for_child(self.pid, None)

    def _next_record(self, timeout: float | None) -> tuple[bytes, int, int]:
        """Read one record, keeping exit reports; called with the lock held.

        Returns (b"", 0, 0) on a timeout or once the server has gone.
        """
        while len(self._pending) < _RECORD.size:
            if self._gone:
                return b"", 0, 0
            self._sock.settimeout(timeout)
            try:
                data = self._sock.recv(4096)
            except (TimeoutError, BlockingIOError):
                return b"", 0, 0
            except OSError:
                data = b""
            if not data:
                self._gone = True
                return b"", 0, 0
            self._pending += data
        kind, pid, value = _RECORD.unpack_from(self._pending)
        del self._pending[: _RECORD.size]
        if kind == _EXITED:
            self._exits[pid] = value
        return kind, pid, value


class ForkedProcess:
    """A forked worker, with the part of ``subprocess.Popen`` the engine uses."""

    def __init__(self, pid: int, server: ForkServer | None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._server = server  # its parent; None: this process is
        self._ended = False
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, signum: int) -> None:
        if self._ended:
            return
        if self._pidfd is not None:  # a pidfd cannot reach a later process with the same pid
            signal.pidfd_send_signal(self._pidfd, signum)
        else:
            os.kill(self.pid, signum)

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._ended:
            if self._server is None:
                self.returncode = wait_for_child(self.pid, timeout, self._pidfd)
            else:
                self.returncode = self._server.wait(self.pid, timeout)
            self._ended = True
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return self.returncode


def wait_for_child(pid: int, timeout: float | None, pidfd: int | None = None) -> int | None:
    """Reap child ``pid``: its returncode, or None if someone else reaped it first.

    Waits on a pidfd (``pidfd``, or one opened here) where there are pidfds;
    raises ``subprocess.TimeoutExpired`` if the child is still running.
    """
    own = None
    if pidfd is None:
        try:
            pidfd = own = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfds here, or the child is reaped already
            return _poll_for_child(pid, timeout)
    try:
        ended = _readable([pidfd], timeout)
    finally:
        if own is not None:
            os.close(own)
    if not ended:
        raise subprocess.TimeoutExpired(f"process {pid}", timeout or 0.0)
    try:
        _, status = os.waitpid(pid, 0)  # it has ended: this does not block
    except ChildProcessError:
        return None  # reaped by a SIGCHLD handler of the program's own
    return os.waitstatus_to_exitcode(status)


def _readable(fds: list[int], timeout: float | None) -> list[int]:
    """Those of ``fds`` readable within ``timeout`` seconds (None: wait until one is).

    ``poll``, not ``select``: a descriptor numbered 1024 or more (a program
    with many files or connections open) is out of ``select``'s range.
    """
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    milliseconds = None if timeout is None else max(0, math.ceil(timeout * 1000))
    return [fd for fd, _ in poller.poll(milliseconds)]


def _poll_for_child(pid: int, timeout: float | None) -> int | None:
    """``wait_for_child`` without pidfds: ``waitpid`` at growing intervals."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.0005
    try:
        while True:
            done, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            left = deadline - time.monotonic() if deadline is not None else 0.0
            if left <= 0:
                raise subprocess.TimeoutExpired(f"process {pid}", timeout or 0.0)
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)
    except ChildProcessError:
        return None  # reaped by a SIGCHLD handler of the program's own


def _fork(lifeline_fd: int, child: Callable[[int], NoReturn]) -> int:
    """Fork; the child runs ``child`` with its own copy of the lifeline and never returns."""
    from ..._worker import main  # noqa: F401  (imported once here, not in every worker)

    # or each fork would print what is still in the buffers again
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    # The lifeline's own descriptors are closed in every fork (process.py): pass a copy.
    lifeline = os.dup(lifeline_fd)
    try:
        pid = os.fork()
        if pid == 0:
            child(lifeline)
    finally:
        os.close(lifeline)
    return pid


# -- in a forked process -----------------------------------------------------


def _become_quiet_copy(keep: set[int]) -> None:
    """Drop the parent's signal handlers, pipes and sockets."""
    for signum in range(1, signal.NSIG):  # the parent's Python handlers are not ours
        try:
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # not a signal here
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us
    _let_go_of_pipes(keep | {0, 1, 2})
    gc.freeze()  # objects copied from the parent are never collected here


def _in_child(prepare: Callable[[], None], sock_fd: int, lifeline_fd: int) -> NoReturn:
    """Become a worker; whatever happens, never return into the parent's code."""
    code = 1
    try:
        prepare()
        _reseed()
        from ..._worker import shared_main
        from ..._worker.main import main

        shared_main.in_forked_worker()

        main(sock_fd, lifeline_fd)
        code = 0
    finally:
        os._exit(code)


def _reseed() -> None:
    """Give this copy random numbers of its own.

    A copy starts with its parent's generators: every worker would draw the
    same numbers. ``random`` reseeds itself after a fork; NumPy's global
    generator does not.
    """
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        try:
            numpy_random.seed()
        except Exception:
            pass


def _serve(control_fd: int, first: list[int], lifeline_fd: int) -> NoReturn:
    code = 0
    try:
        if first:
            # On a machine with few CPUs, forking the others would slow the first
            # worker down: wait until it has answered (the parent says so), or briefly.
            _readable([control_fd], _FIRST_WAIT)
        _become_quiet_copy({control_fd, lifeline_fd, *first})
        _serve_requests(control_fd, first, lifeline_fd)
    except BaseException:
        code = 1
    finally:
        # Its workers end once their sockets close. The parent, which waits for this
        # process to exit, then knows that none of them is left.
        try:
            _reap_all()
        finally:
            os._exit(code)


def _serve_requests(control_fd: int, first: list[int], lifeline_fd: int) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    server_fds = (control_fd, wake_r, wake_w)
    with socket.socket(fileno=control_fd) as control:
        for i, sock_fd in enumerate(first):
            _fork_from_server(control, sock_fd, lifeline_fd, (*server_fds, *first[i + 1 :]))
            os.close(sock_fd)
        os.close(lifeline_fd)
        while True:
            readable = _readable([control_fd, wake_r], None)
            if wake_r in readable:
                drain_pipe(wake_r)
                _report_exits(control)
            if control_fd in readable:
                message, fds, _, _ = socket.recv_fds(control, 1, 2)
                if not message:
                    return  # the pool has shut down, or its process died
                if len(fds) == 2:
                    _fork_from_server(control, fds[0], fds[1], server_fds)
                for fd in fds:
                    os.close(fd)


def _fork_from_server(
    control: socket.socket, sock_fd: int, lifeline_fd: int, not_for_worker: tuple[int, ...]
) -> None:
    if _peer_closed(sock_fd):  # the pool shut down before this worker was forked
        _tell(control, _FAILED, 0, errno.EPIPE)
        return
    try:
        pid = os.fork()
    except OSError as problem:
        _tell(control, _FAILED, 0, problem.errno or 0)
        return
    if pid == 0:

        def leave_the_server() -> None:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for fd in not_for_worker:
                os.close(fd)

        _in_child(leave_the_server, sock_fd, lifeline_fd)
    _tell(control, _STARTED, pid, 0)


def _tell(control: socket.socket, kind: bytes, pid: int, value: int) -> None:
    try:
        control.sendall(_RECORD.pack(kind, pid, value))
    except OSError:
        pass  # the parent has closed its end: nobody is listening any more


def _peer_closed(sock_fd: int) -> bool:
    """Whether the parent has closed its end of the socket ``sock_fd``."""
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)  # POLLHUP is reported whatever is asked
    return any(events & select.POLLHUP for _, events in poller.poll(0))


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _report_exits(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _tell(control, _EXITED, pid, os.waitstatus_to_exitcode(status))


def _let_go_of_pipes(keep: set[int]) -> None:
    """Point every inherited pipe and socket at /dev/null, keeping the numbers.

    Closing them would free their numbers while Python objects copied from the
    parent still name them; /dev/null keeps each number taken.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        names = [str(fd) for fd in range(3, 256)]
    null = os.open(os.devnull, os.O_RDWR)
    for name in names:
        fd = int(name)
        if fd in keep or fd == null:
            continue
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode):
            os.dup2(null, fd, inheritable=False)
    os.close(null)
