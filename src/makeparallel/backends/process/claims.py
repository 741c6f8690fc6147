"""A caller waiting for its task reads the answer itself: the claim on a worker.

    caller in result() --claim--> worker BUSY -> CLAIMED; its socket and pidfd leave the
                                  I/O thread's poller (the handlers stay bound)
        reads frames itself: progress, then the answer: reported first, then taken off
    --release--> CLAIMED -> BUSY / IDLE / RETIRING; socket and pidfd back in the poller

One task submitted and its result awaited, then the next, is the common
shape of a program that calls a ``@parallel`` function and uses the value at
once. Its cost is mostly waking threads up: the worker, the I/O thread, then
the caller. A caller that reads its own answer saves the I/O thread's
wake-up and the hand-over of the result.

A claim is taken only on a worker whose one task in flight is the caller's
(nothing was sent behind it), that the I/O thread is not reading at that
moment, and with nothing left to write; while it lasts nothing is sent to
the worker and the I/O thread does not read it. Whatever happens to the
worker meanwhile - it dies, the task times out or is cancelled (the worker
moves to STOPPING) - the caller lets go, and the I/O thread, which sees the
socket and pidfd again, handles it as always.

An interruption (Ctrl-C) while the caller waits for bytes costs nothing: the
caller lets go and the task goes on, as with any other wait. Only one that
lands between reading bytes off the socket and reporting what they said may
have lost part of the stream; then the caller asks the I/O thread to stop
the worker, and the task ends with a ``TaskError`` unless it had been
reported already (the answer is reported before it is taken off the worker).
"""

from __future__ import annotations

import logging
import select
import time

from ..._task import Task
from ..._worker import wire
from ...errors import TaskError
from . import codec, forward
from .exchange import Exchange
from .poller import READ, WRITE, Poller
from .workers import Worker, WorkerState, move

logger = logging.getLogger("makeparallel")

SLICE = 0.05  # seconds: how often a claimer looks whether its worker was taken back


def read_here(ex: Exchange, poller: Poller, task: Task, deadline: float | None) -> None:
    """Wait for ``task`` by reading its worker's answer in this thread, if it may.

    Returns when the task has ended, at ``deadline``, or when the worker
    went away or is being stopped; the caller then waits as usual.
    """
    if ex.io.current():
        return
    worker = _claim(ex, poller, task)
    if worker is None:
        return
    try:
        _read_until_done(ex, worker, task, deadline)
    finally:
        _release(ex, poller, worker)


def _claim(ex: Exchange, poller: Poller, task: Task) -> Worker | None:
    with ex.table.lock:
        worker = ex.table.holding(task)
        if (
            worker is None
            or worker.state is not WorkerState.BUSY
            or len(worker.inflight) != 1
            or worker.reading
            or worker.outbox
            or ex.closing
        ):
            return None
        move(worker, WorkerState.CLAIMED)
        poller.suspend(worker.sock.fileno())
        if worker.pidfd is not None:
            poller.suspend(worker.pidfd)
    return worker


def _read_until_done(ex: Exchange, worker: Worker, task: Task, deadline: float | None) -> None:
    waiting = select.poll()
    waiting.register(worker.sock.fileno(), select.POLLIN)
    handle = task.handle
    if ex.pace.quick:
        # Answers come that fast: poll a while before sleeping (see wire.SPIN_SECONDS).
        wire.poll_briefly(waiting, wire.SPIN_SECONDS)
    while not handle.done():
        # In slices, to notice a worker taken back (being stopped) while this waits.
        wait = SLICE
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return
        if not waiting.poll(wait * 1000):
            with ex.table.lock:
                if worker.state is not WorkerState.CLAIMED:
                    return
            continue
        try:
            frames, ended = worker.reader.read(worker.sock)
            for kind, task_id, body in frames:
                _on_frame(ex, worker, kind, task_id, body)
        except OSError:
            return  # its socket is gone: the worker is going or gone
        except BaseException:
            _interrupted(ex, worker, task)  # part of the stream may be lost
            raise
        if ended:
            return


def _on_frame(ex: Exchange, worker: Worker, kind: int, task_id: int, body: bytearray) -> None:
    if kind == wire.PROGRESS:
        ex.progress(worker, task_id, body)
        return
    if kind == wire.LOG:
        forward.deliver_log(body)
        return
    if kind == wire.OUTPUT:
        forward.deliver_output(body)
        return
    task = worker.task  # (nothing but this thread changes what a claimed worker holds)
    if kind not in codec.ANSWERS or task is None or task.id != task_id:
        logger.error("worker %s sent an unexpected frame %r", worker.label, chr(kind))
        return
    ex.sink.finished(task, *codec.outcome(task, kind, body, worker.label))
    ex.take_answer(worker, task_id)


def _interrupted(ex: Exchange, worker: Worker, task: Task) -> None:
    """The claimer was interrupted, perhaps with an answer read and not reported."""
    error = TaskError(
        f"{task.describe()} was lost: the thread reading its answer was interrupted, "
        f"and its worker {worker.label} was stopped",
        **task.context(worker.label),
    )
    stop = ex.stop_task(task, error)
    if stop is not None:
        ex.io.stop(*stop)


def _release(ex: Exchange, poller: Poller, worker: Worker) -> None:
    with ex.table.lock:
        if worker.state is WorkerState.CLAIMED:
            if worker.inflight:
                move(worker, WorkerState.BUSY)
            else:
                ex.free_locked(worker)
        if worker.state is not WorkerState.GONE:
            # (a frame sent to every worker meanwhile may have left something to write)
            poller.resume(worker.sock.fileno(), READ | WRITE if worker.outbox else READ)
            if worker.pidfd is not None:
                poller.resume(worker.pidfd, READ)
    ex.hand_out()
