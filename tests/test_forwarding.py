"""What process workers log and print reaches the parent's logging and output."""

from __future__ import annotations

import logging
import os

import pytest

import makeparallel as mp

DEADLINE = 30.0
START_METHODS = ["fork", "spawn"]


def log_and_return(x: int) -> int:
    log = logging.getLogger("app.worker")
    log.info("working on %s", x)
    log.debug("a detail of %s", x)
    return x * 2


def log_failure() -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("app").exception("lookup failed")


def log_unpicklable() -> None:
    logging.getLogger("app").warning("with a lock attached", extra={"lock": os.pipe})


def info_enabled() -> bool:
    return logging.getLogger("app").isEnabledFor(logging.INFO)


def shout(text: str) -> int:
    print(text)
    print("to stderr", file=__import__("sys").stderr)
    return os.getpid()


@pytest.mark.parametrize("start", START_METHODS)
def test_a_workers_record_reaches_the_parents_logger_before_the_result(
    caplog: pytest.LogCaptureFixture, start: str
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="app"),
        mp.Pool(workers=1, backend="process", start=start) as pool,
    ):
        handle = pool.submit(log_and_return, 21)
        assert handle.result(timeout=DEADLINE) == 42
        pid = pool.workers_info()[0]["pid"]
        records = [r for r in caplog.records if r.name == "app.worker"]  # no waiting
    assert [r.getMessage() for r in records] == ["working on 21"]  # not the DEBUG one
    record = records[0]
    assert record.task_id == handle.task_id  # type: ignore[attr-defined]
    assert record.task_name == "log_and_return"  # type: ignore[attr-defined]
    assert record.worker_pid == pid  # type: ignore[attr-defined]
    assert record.process == pid


def test_a_logged_exception_arrives_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with mp.Pool(workers=1, backend="process") as pool:
        pool.submit(log_failure).result(timeout=DEADLINE)
    (record,) = [r for r in caplog.records if r.name == "app"]
    assert record.levelno == logging.ERROR
    assert record.exc_text is not None
    assert "KeyError: 'missing'" in record.exc_text


def test_a_record_that_cannot_be_pickled_still_arrives(caplog: pytest.LogCaptureFixture) -> None:
    with mp.Pool(workers=1, backend="process", start="spawn") as pool:
        pool.submit(log_unpicklable).result(timeout=DEADLINE)
    assert [r.getMessage() for r in caplog.records if r.name == "app"] == ["with a lock attached"]


@pytest.mark.parametrize("start", START_METHODS)
def test_records_below_the_parents_level_are_not_sent(start: str) -> None:
    logging.getLogger("app").setLevel(logging.WARNING)
    try:
        with mp.Pool(workers=1, backend="process", start=start) as pool:
            assert pool.submit(info_enabled).result(timeout=DEADLINE) is False
    finally:
        logging.getLogger("app").setLevel(logging.NOTSET)


def test_workers_follow_the_parents_level_when_it_changes() -> None:
    app = logging.getLogger("app")
    app.setLevel(logging.WARNING)
    try:
        with mp.Pool(workers=1, backend="process") as pool:
            assert pool.submit(info_enabled).result(timeout=DEADLINE) is False
            app.setLevel(logging.INFO)
            seen = [pool.submit(info_enabled).result(timeout=DEADLINE)]
            deadline = __import__("time").monotonic() + DEADLINE
            while not seen[-1] and __import__("time").monotonic() < deadline:
                seen.append(pool.submit(info_enabled).result(timeout=DEADLINE))
            assert seen[-1] is True  # within about a second (levels are checked that often)
    finally:
        app.setLevel(logging.NOTSET)


@pytest.mark.parametrize("start", START_METHODS)
def test_what_a_worker_prints_reaches_the_parents_stdout_and_stderr(
    capsys: pytest.CaptureFixture[str], start: str
) -> None:
    with mp.Pool(workers=1, backend="process", start=start) as pool:
        pid = pool.submit(shout, "hello from a worker").result(timeout=DEADLINE)
        captured = capsys.readouterr()  # no waiting: it came before the result
    assert pid != os.getpid()
    assert captured.out == "hello from a worker\n"
    assert captured.err == "to stderr\n"


def test_forward_logs_false_leaves_records_and_output_in_the_worker(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="app"),
        mp.Pool(workers=1, backend="process", start="spawn", forward_logs=False) as pool,
    ):
        assert pool.submit(log_and_return, 1).result(timeout=DEADLINE) == 2
        pool.submit(shout, "kept").result(timeout=DEADLINE)
    assert [r for r in caplog.records if r.name.startswith("app")] == []
    assert "kept" not in capsys.readouterr().out


def test_forward_logs_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="forward_logs"):
        mp.Pool(workers=1, forward_logs="yes")  # type: ignore[arg-type]
