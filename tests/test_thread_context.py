"""The thread engine runs each task in the submitter's context variables."""

from __future__ import annotations

import contextvars
from pathlib import Path

import makeparallel as mp

DEADLINE = 30.0

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def read_request_id() -> str | None:
    return request_id.get()


def change_request_id() -> str | None:
    request_id.set("changed by the task")
    return request_id.get()


def change_then_fail_once(path: str) -> str | None:
    seen = request_id.get()
    request_id.set("changed by the first attempt")
    if not Path(path).exists():
        Path(path).touch()
        raise OSError("the first attempt fails")
    return seen


def test_a_thread_task_sees_the_context_variables_set_before_submit() -> None:
    with mp.Pool(workers=2, backend="thread") as pool:
        token = request_id.set("req-1")
        try:
            first = pool.submit(read_request_id)
        finally:
            request_id.reset(token)
        token = request_id.set("req-2")
        try:
            second = pool.submit(read_request_id)
            assert first.result(timeout=DEADLINE) == "req-1"  # the value at submit, not now
            assert second.result(timeout=DEADLINE) == "req-2"
            assert list(pool.map(lambda _: request_id.get(), range(3))) == ["req-2"] * 3
        finally:
            request_id.reset(token)


def test_what_a_task_sets_stays_in_the_task(tmp_path: Path) -> None:
    token = request_id.set("caller")
    try:
        with mp.Pool(workers=1, backend="thread") as pool:
            changed = pool.submit(change_request_id)
            assert changed.result(timeout=DEADLINE) == "changed by the task"
            retry = mp.Retry(attempts=2, backoff=0)
            once = mp.parallel(change_then_fail_once, retry=retry, pool=pool)
            assert once(str(tmp_path / "x")).result(timeout=DEADLINE) == "caller"  # each try afresh
        assert request_id.get() == "caller"
    finally:
        request_id.reset(token)
