"""The frame format spoken between the parent and its worker processes.

A frame is a fixed header ``(body length, kind, task id)`` followed by the
body. Bodies are written with scatter-gather I/O so a large argument is never
concatenated into a second copy. Both sides of the pipe import this module;
it must stay free of the rest of the package.
"""

from __future__ import annotations

import struct
from _socket import MSG_DONTWAIT
from os import read, sched_yield
from time import perf_counter

TYPE_CHECKING = False  # workers import this module: no typing at run time
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Sequence
    from pickle import PickleBuffer
    from select import poll

HEADER = struct.Struct("!QBQ")
# a task body starts with (function bytes length, context bytes length, attempt, function
# key): a function with a key is sent to a worker once, later tasks name it by the key only
TASK_HEAD = struct.Struct("!IIIQ")
# a task frame's header and the start of its body, packed in one go
TASK_FRAME_HEAD = struct.Struct("!QBQIIIQ")
# functions a worker keeps by key, the least recently used dropped first; the parent
# keeps the same list for each worker, so both drop the same one
KEPT_FUNCTIONS = 256

# parent -> worker
CONFIG = ord("C")
TASK = ord("T")
CHUNK = ord("M")
EXIT = ord("X")
CANCEL = ord("K")  # skip this task if it has not started (it waits behind another)
AUTHKEY = ord("A")  # the parent's multiprocessing authkey, for its Manager's objects
PRELOAD = ord("L")  # import this module now: tasks of its functions are coming
LEVELS = ord("V")  # the parent's logging levels changed (forward_logs)
# A profiled task goes out as TASK | TIMED (or CHUNK | TIMED); its answer, of the usual
# kind, then ends with TIMING: the worker's clock readings (time.monotonic, the same
# clock in every process of the machine): when it ended its previous profiled task, began
# this one, began and ended its function, and ended. Unprofiled tasks and their answers
# are exactly as before.
TIMED = 0x80
TIMING = struct.Struct("!ddddd")
TASK_KINDS = (TASK, CHUNK, TASK | TIMED, CHUNK | TIMED)
# worker -> parent
READY = ord("R")
BOOT_FAILED = ord("B")
RESULT = ord("O")
ERROR = ord("E")
CHUNK_RESULT = ord("m")
PROGRESS = ord("P")
SKIPPED = ord("S")  # a cancelled task that never started
LOG = ord("G")  # a log record made in the worker (forward_logs)
OUTPUT = ord("W")  # what the worker printed: b"1" (stdout) or b"2" (stderr), then the text

# How long either end polls for the other's next frame before it sleeps, when
# frames have been coming that fast: waking a sleeping process or thread costs
# tens of microseconds, more on a virtual machine.
SPIN_SECONDS = 0.0005

Buffer = bytes | bytearray | memoryview
# a pickle with out-of-band buffers: (buffer count, pickle length), then each
# buffer's length, the pickle, and the buffers themselves
BLOB_HEAD = struct.Struct("!IQ")
BLOB_LENGTH = struct.Struct("!Q")


def blob(data: bytes, buffers: Sequence[PickleBuffer]) -> tuple[Buffer, ...]:
    """The parts of a pickle and its buffers, the buffers never copied."""
    if not buffers:
        return (BLOB_HEAD.pack(0, len(data)), data)
    raws = [b.raw() for b in buffers]
    head = BLOB_HEAD.pack(len(raws), len(data)) + b"".join(BLOB_LENGTH.pack(r.nbytes) for r in raws)
    return (head, data, *raws)


def unblob(view: memoryview) -> tuple[memoryview, list[memoryview]]:
    """The pickle and its buffers, as views into ``view`` (no copy)."""
    count, size = BLOB_HEAD.unpack_from(view, 0)
    position = BLOB_HEAD.size
    lengths = []
    for _ in range(count):
        lengths.append(BLOB_LENGTH.unpack_from(view, position)[0])
        position += BLOB_LENGTH.size
    data = view[position : position + size]
    position += size
    buffers = []
    for length in lengths:
        buffers.append(view[position : position + length])
        position += length
    return data, buffers


def frame(kind: int, task_id: int, parts: Sequence[Buffer]) -> list[Buffer]:
    """The buffers of one frame, header first."""
    return [HEADER.pack(sum(map(len, parts)), kind, task_id), *parts]


def poll_briefly(poller: poll, seconds: float) -> bool:
    """Poll without sleeping for up to ``seconds``; True once something is readable.

    The CPU is offered to others between polls: the other end may be waiting
    for this very CPU.
    """
    end = perf_counter() + seconds
    while perf_counter() < end:
        if poller.poll(0):
            return True
        sched_yield()
    return False


def drain_pipe(fd: int) -> None:
    """Read a non-blocking pipe until it is empty (a wake-up pipe's bytes mean nothing)."""
    try:
        while read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def task_frame(
    kind: int,
    task_id: int,
    attempt: int,
    fn_key: int,
    fn_data: bytes,
    ctx_data: bytes,
    args: Sequence[Buffer],
) -> tuple[Buffer, ...]:
    """The buffers of one TASK or CHUNK frame (``fn_data`` empty: the worker has it)."""
    size = TASK_HEAD.size + len(fn_data) + len(ctx_data) + sum(map(len, args))
    head = TASK_FRAME_HEAD.pack(size, kind, task_id, len(fn_data), len(ctx_data), attempt, fn_key)
    return (head, fn_data, ctx_data, *args)


def with_timing(reply: list[Buffer], previous: float, marks: list[float], ended: float) -> None:
    """Append the worker's clock readings to the answer ``reply`` of a TIMED task.

    ``marks``: when the task began, then before and after its function ran
    (fewer if loading the task failed or the function raised).
    """
    began = marks[0]
    run_from = marks[1] if len(marks) > 1 else ended
    run_to = marks[2] if len(marks) > 2 else ended
    size, kind, task_id = HEADER.unpack(reply[0])
    reply[0] = HEADER.pack(size + TIMING.size, kind, task_id)
    reply.append(TIMING.pack(previous, began, run_from, run_to, ended))


def send_all(sock: socket, buffers: list[Buffer]) -> None:
    """Blocking write of every buffer (used by workers)."""
    while buffers:
        sent = sock.sendmsg(buffers[:512])
        buffers = _advance(buffers, sent)


def send_some(sock: socket, buffers: list[Buffer]) -> list[Buffer]:
    """Non-blocking write; returns what is left to send."""
    while buffers:
        try:
            sent = sock.sendmsg(buffers[:512])
        except (BlockingIOError, InterruptedError):
            return buffers
        buffers = _advance(buffers, sent)
    return buffers


def _advance(buffers: list[Buffer], sent: int) -> list[Buffer]:
    """What is left of ``buffers`` once ``sent`` bytes of them went out.

    Every buffer is byte-sized (``len`` counts bytes): bytes, bytearrays and
    the raw views of pickle buffers.
    """
    if len(buffers) <= 512 and sent == sum(map(len, buffers)):
        return []  # the common case: all of it
    index = 0
    while sent and index < len(buffers):
        size = len(buffers[index])
        if sent >= size:
            sent -= size
            index += 1
        else:
            buffers[index] = memoryview(buffers[index])[sent:]
            sent = 0
    return buffers[index:]


def recv_exact(sock: socket, size: int) -> bytearray | None:
    """Blocking read of exactly ``size`` bytes; ``None`` at end of stream."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            return None
        got += n
    return buf


def recv_frame(sock: socket) -> tuple[int, int, bytearray] | None:
    """Blocking read of one frame; ``None`` when the other side has gone."""
    header = recv_exact(sock, HEADER.size)
    if header is None:
        return None
    size, kind, task_id = HEADER.unpack(header)
    body = recv_exact(sock, size) if size else bytearray()
    if body is None:
        return None
    return kind, task_id, body


class FrameReader:
    """Collects frames from a non-blocking socket, however the bytes arrive."""

    _CHUNK = 1 << 18

    def __init__(self) -> None:
        # recv() into one kept buffer: recv(n) would allocate n bytes every call, and
        # a buffer this size comes from mmap and is unmapped again each time.
        self._scratch = memoryview(bytearray(self._CHUNK))
        self._buf = bytearray()
        self._big: bytearray | None = None  # body of a large frame being filled in place
        self._big_got = 0
        self._big_head: tuple[int, int] = (0, 0)

    def read(
        self, sock: socket, drain: bool = False
    ) -> tuple[list[tuple[int, int, bytearray]], bool]:
        """Read what is available now. Returns the complete frames and whether the stream ended.

        Without ``drain`` a read that did not fill its buffer is the last one:
        the caller's poll says when more arrives, and every system call here
        also gives other threads a turn at the GIL. With ``drain``, read until
        the socket is empty.
        """
        frames: list[tuple[int, int, bytearray]] = []
        while True:
            if self._big is not None:
                wanted = len(self._big) - self._big_got
                try:
                    n = sock.recv_into(memoryview(self._big)[self._big_got :], 0, MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    return frames, False
                if n == 0:
                    return frames, True
                self._big_got += n
                if self._big_got == len(self._big):
                    kind, task_id = self._big_head
                    frames.append((kind, task_id, self._big))
                    self._big = None
                if n < wanted and not drain:
                    return frames, False
                continue
            try:
                n = sock.recv_into(self._scratch, 0, MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return frames, False
            except ConnectionResetError:
                return frames, True
            if not n:
                return frames, True
            self._buf += self._scratch[:n]
            self._parse(frames)
            if n < self._CHUNK and self._big is None and not drain:
                return frames, False

    def _parse(self, frames: list[tuple[int, int, bytearray]]) -> None:
        buf = self._buf
        pos = 0
        while len(buf) - pos >= HEADER.size:
            size, kind, task_id = HEADER.unpack_from(buf, pos)
            start = pos + HEADER.size
            if len(buf) - start >= size:
                frames.append((kind, task_id, buf[start : start + size]))
                pos = start + size
                continue
            if size > self._CHUNK:
                # Fill a large body in place instead of growing a buffer.
                body = bytearray(size)
                have = len(buf) - start
                body[:have] = buf[start:]
                self._big, self._big_got, self._big_head = body, have, (kind, task_id)
                pos = len(buf)
            break
        del buf[:pos]
