"""The loop that runs inside every worker process of the process engine.

    parent I/O thread  ==socket==>  inbox -> load fn/args -> call -> send result
                                      ^                                  |
                                      +----------------------------------+
    parent's lifeline pipe  -->  watchdog thread: EOF means the parent died -> _exit

A worker knows nothing of pools: it runs its tasks in the order they arrive
(the parent may send several ahead) and writes back exactly one answer per
task - its result, its error, or SKIPPED for a task cancelled before it
started. It ignores SIGINT, so one Ctrl-C in a terminal reaches only the
parent, which then stops the workers itself. The worker must never outlive
its parent and never print a traceback of its own machinery.
"""

from __future__ import annotations

import _socket
import _thread
import os
import select
import sys
from collections import deque
from time import monotonic, perf_counter

from . import context as task_api
from . import forward, serialize, shared_main, state, wire
from .chunk import run_items
from .on_import import AfterImport
from .process_tree import kill_all, stop_descendants

# Start-up time matters (every new or replacement worker pays it): no typing at
# run time, and the C modules under signal, socket and threading, whose Python
# layers import enum, re and more.
_signal = __import__("_signal")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# function key -> the function, or its bytes until a task needs it; least recently used
# first, as the parent's copy of this list (see wire.KEPT_FUNCTIONS)
_functions: dict[int, Any] = {}
_IDLE_MS = 500  # a worker waiting this long for its next task is idle


def main(sock_fd: int, lifeline_fd: int) -> None:
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    state.mark_worker()
    _watch_parent(lifeline_fd)
    sock = _socket.socket(fileno=sock_fd)
    os.set_inheritable(sock_fd, False)
    channel = _Channel(sock)
    try:
        first = wire.recv_frame(sock)
        if first is None:
            os._exit(0)
        config = serialize.loads(first[2])
        sys.path[:] = config["sys_path"]
        if config["authkey"] is not None:
            use_authkey(config["authkey"])
        if config["ignore_sigterm"]:
            _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)  # the parent shuts us down
        name = f"{config['pool']}-worker-{config['index']}"
        _name_in_comm(name)
        if config["initializer"] is not None:
            initializer, initargs = shared_main.loads(config["initializer"])
            initializer(*initargs)
        if config["forward"] is not None:
            forward.install(channel, config["forward"])
        for module in config["preload"]:
            preload(module)
        wire.send_all(sock, wire.frame(wire.READY, os.getpid(), ()))
    except BaseException:
        import traceback

        text = traceback.format_exc()
        try:
            wire.send_all(sock, wire.frame(wire.BOOT_FAILED, 0, (text.encode(),)))
        finally:
            os._exit(1)
    _serve(channel, name)


def use_authkey(key: bytes) -> None:
    """Take the parent's ``multiprocessing`` authkey, so that what its Manager serves
    (a shared queue, an event) can be passed to tasks and reached from here.

    A fresh interpreter has a random key of its own; importing
    ``multiprocessing`` here just for this would slow every worker's start, so
    the key is set when a task first brings ``multiprocessing`` in.
    """
    module = sys.modules.get("multiprocessing.process")
    if module is not None:
        module.current_process().authkey = key
    if not _authkey:
        sys.meta_path.insert(0, AfterImport("multiprocessing.process", _share_authkey))
    _authkey[:] = [key]


_authkey: list[bytes] = []  # the parent's, once known


def _share_authkey(module: Any) -> None:
    module.current_process().authkey = _authkey[0]


def _name_in_comm(name: str) -> None:
    """Show the pool and worker in ps, top and py-spy (Linux keeps 15 characters)."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass  # not Linux: the process keeps the interpreter's name


def _name_in_full(name: str) -> None:
    """The whole name as the command line, with setproctitle (the ``names`` extra).

    Done the first time the worker is idle, not at start nor between two tasks:
    importing setproctitle takes several milliseconds (it imports logging),
    which would delay the task that waits for it.
    """
    try:
        from setproctitle import setproctitle  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return
    setproctitle(f"makeparallel: {name}")


def _watch_parent(lifeline_fd: int) -> None:
    """Exit the moment the parent dies: its end of the lifeline closes with it.

    The processes the running task started go too, as when the pool kills a worker.
    """

    def watch() -> None:
        try:
            while os.read(lifeline_fd, 1):
                pass
        except OSError:
            pass
        try:
            kill_all(stop_descendants(os.getpid()))
        finally:
            os._exit(0)

    _thread.start_new_thread(watch, ())


class _Channel:
    """The worker's end of the socket; progress may be sent from the task's thread."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.lock = _thread.allocate_lock()
        self.label = f"pid {os.getpid()}"

    def send(self, buffers: list[wire.Buffer]) -> None:
        with self.lock:
            wire.send_all(self.sock, buffers)

    def progress_sink(self, task_id: int) -> Callable[[float, str | None], None]:
        def send_progress(value: float, message: str | None) -> None:
            self.send(wire.frame(wire.PROGRESS, task_id, (serialize.dumps((value, message)),)))

        return send_progress


class _Inbox:
    """Frames from the parent, in order. The parent may send several tasks ahead; a
    CANCEL frame for one that has not started removes it (answered with SKIPPED)."""

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel
        self.reader = wire.FrameReader()
        # Wait in poll(), never in a blocking recv(): a thread asleep in recv() is woken
        # each time the parent reads an answer (the kernel's "room to write" wake-up),
        # a wasted wake-up on another CPU per task; poll() asks for readable only.
        self.poller = select.poll()
        self.poller.register(channel.sock.fileno(), select.POLLIN)
        self.queue: deque[tuple[int, int, bytearray]] = deque()
        self.ended = False
        self.spin = False  # the last wait was short: poll a while before sleeping
        self.one_at_a_time = False  # the last wait ended with one task, not a batch
        self.when_idle: Callable[[], None] | None = None  # run once, the first time idle

    def next(self) -> tuple[int, int, bytearray] | None:
        """The next frame to act on; None once the parent has closed its end."""
        if self.queue:
            self._pull(wait=False)  # a cancel for a waiting task may have arrived
        while not self.queue:
            if self.ended:
                return None
            self._pull(wait=True)
        return self.queue.popleft()

    def _pull(self, wait: bool) -> None:
        if wait:
            self._wait()
        frames, ended = self.reader.read(self.channel.sock)
        self.ended = self.ended or ended
        for message in frames:
            if message[0] in wire.TASK_KINDS:
                _remember(message[2])
            if message[0] == wire.CANCEL:
                self._skip(message[1])
            elif message[0] == wire.AUTHKEY:
                use_authkey(bytes(message[2]))
            elif message[0] == wire.LEVELS:
                forward.set_levels(serialize.loads(message[2]))
            else:
                self.queue.append(message)
        if wait:
            self.one_at_a_time = len(self.queue) <= 1

    def _wait(self) -> None:
        """Until the parent's next frame is readable.

        Waking a sleeping process costs tens of microseconds (more on a virtual
        machine), as much as a short task itself. So while the parent sends one
        task at a time, each soon after the last answer (a caller waiting for
        each result in turn), poll for up to SPIN_SECONDS before sleeping. A
        worker sent batches, or whose tasks come further apart, sleeps at once:
        its polling would take a CPU from the parent or the other workers.
        """
        missed = False
        if self.spin and self.one_at_a_time:
            if wire.poll_briefly(self.poller, wire.SPIN_SECONDS):
                return
            missed = True
        started = perf_counter()
        if self.when_idle is not None and not self.poller.poll(_IDLE_MS):
            when_idle, self.when_idle = self.when_idle, None
            when_idle()
        self.poller.poll()
        self.spin = not missed and perf_counter() - started < wire.SPIN_SECONDS

    def _skip(self, task_id: int) -> None:
        for message in self.queue:
            if message[1] == task_id and message[0] in wire.TASK_KINDS:
                self.queue.remove(message)
                self.channel.send(wire.frame(wire.SKIPPED, task_id, ()))
                return
        # Not here: it has run already, and its answer is on its way.


def _serve(channel: _Channel, name: str) -> None:
    inbox = _Inbox(channel)
    inbox.when_idle = lambda: _name_in_full(name)
    while True:
        message = inbox.next()
        if message is None:
            os._exit(0)
        kind, task_id, body = message
        if kind in (wire.TASK, wire.CHUNK):
            reply = _run(channel, kind, task_id, body)
        elif kind in wire.TASK_KINDS:
            reply = _run_timed(channel, kind & ~wire.TIMED, task_id, body)
        elif kind == wire.PRELOAD:
            preload(body.decode())
            continue
        elif kind == wire.EXIT:
            os._exit(0)
        else:
            continue
        channel.send(reply)


def preload(module: str) -> None:
    """Import a module tasks will need, before they come (a failure shows in the task)."""
    try:
        __import__(module)
    except BaseException:
        pass


def _remember(body: bytearray) -> None:
    """A task arrived: keep its function by its key, or mark the key as just used.

    Done as frames arrive, in the order the parent sent them (a task skipped
    later counts too), so that this list and the parent's copy drop the same
    function when full.
    """
    fn_len, _, _, key = wire.TASK_HEAD.unpack_from(body, 0)
    if not key:
        return
    if fn_len:
        start = wire.TASK_HEAD.size
        kept: Any = bytes(body[start : start + fn_len])  # unpickled when a task needs it
        _functions.pop(key, None)
    else:
        kept = _functions.pop(key, None)
        if kept is None:
            return  # the parent named a function this worker does not have: that task fails
    _functions[key] = kept
    if len(_functions) > wire.KEPT_FUNCTIONS:
        del _functions[next(iter(_functions))]


def _run(channel: _Channel, kind: int, task_id: int, body: bytearray) -> list[wire.Buffer]:
    try:
        fn_len, ctx_len, attempt, fn_key = wire.TASK_HEAD.unpack_from(body, 0)
        view = memoryview(body)
        start = wire.TASK_HEAD.size
        fn = _load_function(fn_key, view[start : start + fn_len])
        name, metadata, *trace = serialize.loads(view[start + fn_len : start + fn_len + ctx_len])
        payload = serialize.loads(*wire.unblob(view[start + fn_len + ctx_len :]))
    except BaseException as exc:
        return wire.frame(wire.ERROR, task_id, (remote_error(exc, "load"),))
    context, token = task_api.enter(
        task_id, name, metadata, attempt, channel.label, channel.progress_sink(task_id)
    )
    forward.running(task_id, name)
    span = _traced(trace[0]) if trace else None
    try:
        if kind == wire.TASK:
            args, kwargs = payload
            return _run_call(task_id, fn, args, kwargs)
        star, items = payload
        return _run_items(task_id, fn, star, items)
    finally:
        if span is not None:
            span()
        task_api.leave(context, token)  # the last progress value goes out before the result
        forward.finished()  # and what it printed


# A profiled task's clock readings (None: not profiled), and when the last one ended
_marks: list[float] | None = None
_last_timed = 0.0


def _run_timed(channel: _Channel, kind: int, task_id: int, body: bytearray) -> list[wire.Buffer]:
    """``_run`` for a task being profiled: its answer carries the worker's clock readings."""
    global _marks, _last_timed
    marks = [monotonic()]
    _marks = marks
    try:
        reply = _run(channel, kind, task_id, body)
    finally:
        _marks = None
    ended = monotonic()
    wire.with_timing(reply, _last_timed, marks, ended)
    _last_timed = ended
    return reply


def _traced(headers: dict[str, str]) -> Callable[[], None] | None:
    """Make the task span's trace context current (only traced tasks load opentelemetry)."""
    from .trace import enter

    return enter(headers)


def _load_function(key: int, data: memoryview) -> Callable[..., Any]:
    if not key:
        return _plain(shared_main.loads(data))
    fn = _functions[key]
    if type(fn) is bytes:
        fn = _functions[key] = _plain(shared_main.loads(fn))
    return fn  # type: ignore[no-any-return]


def _plain(fn: Any) -> Callable[..., Any]:
    # A decorated function travels by reference to its wrapper; run the plain one.
    if getattr(type(fn), "_makeparallel_wrapper", False):
        return fn.__wrapped__  # type: ignore[no-any-return]
    return fn  # type: ignore[no-any-return]


def _run_call(
    task_id: int, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[wire.Buffer]:
    marks = _marks
    if marks is not None:
        marks.append(monotonic())
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        return wire.frame(wire.ERROR, task_id, (remote_error(exc, "run"),))
    if marks is not None:
        marks.append(monotonic())
    try:
        data, buffers = serialize.dumps_with_buffers(value)
    except BaseException as exc:
        return wire.frame(wire.ERROR, task_id, (remote_error(exc, "dump", value),))
    return wire.frame(wire.RESULT, task_id, wire.blob(data, buffers))


def _run_items(
    task_id: int, fn: Callable[..., Any], star: bool, items: list[Any]
) -> list[wire.Buffer]:
    marks = _marks
    if marks is not None:
        marks.append(monotonic())
    values, errors, seconds = run_items(fn, star, items, lambda exc, _: remote_error(exc, "run"))
    if marks is not None:
        marks.append(monotonic())
    try:
        data = serialize.dumps((values, errors, seconds))
    except BaseException:
        for offset, value in enumerate(values):
            try:
                serialize.dumps(value)
            except BaseException as exc:
                values[offset] = None
                errors[offset] = remote_error(exc, "dump", value)
        data = serialize.dumps((values, errors, seconds))
    return wire.frame(wire.CHUNK_RESULT, task_id, (data,))


def remote_error(exc: BaseException, phase: str, value: object = None) -> bytes:
    """Describe an exception so the parent can rebuild it, or explain why it cannot.

    ``phase`` is where it happened: "load" (the task could not be unpickled
    here), "run" (the user's function raised), "dump" (the result could not
    be pickled).
    """
    import traceback

    tb = exc.__traceback__
    if phase == "run" and tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # hide the worker loop's own frame
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        message = str(exc)
    except BaseException:
        message = f"<unprintable {type(exc).__name__}>"
    exc_bytes: bytes | None = None
    why_not = ""
    if phase == "run":
        try:
            exc_bytes = serialize.dumps(exc)
            serialize.loads(exc_bytes)  # some exceptions pickle but cannot be rebuilt
        except BaseException as problem:
            exc_bytes = None
            why_not = f"{type(problem).__name__}: {problem}"
    type_name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    value_type = serialize.type_name(value) if phase == "dump" else ""
    return serialize.dumps((type_name, message, text, exc_bytes, phase, why_not, value_type))
