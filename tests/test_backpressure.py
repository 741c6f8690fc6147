"""max_pending: submit waits for room, or raises PoolFullError."""

from __future__ import annotations

import os
import threading
import time

import pytest

import makeparallel as mp

DEADLINE = 30.0


def wait_on(event: threading.Event, started: threading.Event | None = None) -> bool:
    if started is not None:
        started.set()
    return event.wait(DEADLINE)


def occupy(pool: mp.Pool, release: threading.Event) -> mp.Handle[bool]:
    """Keep the pool's only worker busy until ``release`` is set."""
    started = threading.Event()
    handle = pool.submit(wait_on, release, started)
    assert started.wait(DEADLINE)
    return handle


def test_a_full_queue_refuses_at_once_with_pending_timeout_zero() -> None:
    release = threading.Event()
    with mp.Pool(workers=1, backend="thread", max_pending=2, pending_timeout=0) as pool:
        running = occupy(pool, release)
        queued = [pool.submit(abs, -1), pool.submit(abs, -2)]
        with pytest.raises(mp.PoolFullError, match="max_pending"):
            pool.submit(abs, -3)
        release.set()
        assert running.result(DEADLINE) is True
        assert [h.result(DEADLINE) for h in queued] == [1, 2]


def test_a_blocked_submit_goes_through_when_room_frees_up() -> None:
    release = threading.Event()
    with mp.Pool(workers=1, backend="thread", max_pending=1) as pool:
        occupy(pool, release)
        pool.submit(abs, -1)
        submitted = threading.Event()
        handles: list[mp.Handle[int]] = []

        def producer() -> None:
            handles.append(pool.submit(abs, -2))
            submitted.set()

        thread = threading.Thread(target=producer)
        thread.start()
        assert not submitted.wait(0.2), "submit should wait while the queue is full"
        release.set()
        assert submitted.wait(DEADLINE)
        thread.join()
        assert handles[0].result(DEADLINE) == 2


def test_the_queue_never_holds_more_than_max_pending() -> None:
    most = 0
    with mp.Pool(workers=1, backend="thread", max_pending=50) as pool:
        handles = []
        for i in range(5_000):
            handles.append(pool.submit(yielding, i))
            most = max(most, pool.health().queue_depth)
        assert all(h.result(DEADLINE) is None for h in handles)
    assert most == 50  # full, and never fuller


def test_shutdown_wakes_a_blocked_submitter() -> None:
    release = threading.Event()
    pool = mp.Pool(workers=1, backend="thread", max_pending=1)
    occupy(pool, release)
    pool.submit(abs, -1)
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            pool.submit(abs, -2)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=producer)
    thread.start()
    release.set()
    pool.shutdown(wait=True, cancel_pending=True)
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert all(isinstance(e, RuntimeError) for e in errors)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_pending": 0}, ValueError),
        ({"max_pending": -5}, ValueError),
        ({"max_pending": 1.5}, TypeError),
        ({"max_pending": 10, "pending_timeout": -1}, ValueError),
    ],
)
def test_bad_backpressure_settings(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        mp.Pool(workers=1, backend="thread", **kwargs)  # type: ignore[arg-type]


def yielding(_: int) -> None:
    time.sleep(0)  # hands the GIL to the producer: alone, it would outrun this worker


@pytest.mark.timeout(240)  # about 35 s on 2 cores: GIL hand-offs, not a hang
def test_many_submissions_keep_memory_flat() -> None:
    from makeparallel._memory import resident_bytes

    baseline = resident_bytes(os.getpid())
    assert baseline is not None
    peak, longest = baseline, 0
    with mp.Pool(workers=1, backend="thread", max_pending=1000) as pool:
        for i in range(300_000):
            pool.submit(yielding, i)  # the handle is dropped: only the queue holds the task
            if i % 20_000 == 0:
                peak = max(peak, resident_bytes(os.getpid()) or 0)
                longest = max(longest, pool.health().queue_depth)
    # Unbounded, this producer outruns the worker: the queue reaches most of the tasks
    # and hundreds of MB (measured: 189 000 tasks and 700 MB after 200 000 submissions).
    assert longest <= 1000
    assert peak - baseline < 50 * 1024 * 1024
