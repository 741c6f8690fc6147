"""Flask: one pool per app and process, from MAKEPARALLEL_* settings, made on first use."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flask")

import flask

import makeparallel as mp
from makeparallel.integrations.flask import MakeParallel
from polling import alive, wait_until
from processes import worker_pids
from programs import run_program, write_program


def square(n: int) -> int:
    return n * n


def where(n: int) -> tuple[int, int]:
    return n, os.getpid()


def make_app(name: str, parallel: MakeParallel, **config: object) -> flask.Flask:
    app = flask.Flask(name)
    app.config.update(config)
    parallel.init_app(app)

    @app.get("/square/<int:n>")
    def square_route(n: int) -> dict[str, object]:
        pool = parallel.pool
        value, pid = pool.submit(where, n).result(timeout=30)
        return {"value": square(value), "pid": pid, "pool": pool.name, "backend": pool.backend}

    return app


def test_two_apps_get_their_own_pools_from_their_settings() -> None:
    parallel = MakeParallel()
    processes = make_app("crunch", parallel, MAKEPARALLEL_WORKERS=2, MAKEPARALLEL_START="spawn")
    threads = make_app("io", parallel, MAKEPARALLEL_BACKEND="thread", MAKEPARALLEL_WORKERS=3)
    try:
        first = processes.test_client().get("/square/7").get_json()
        again = processes.test_client().get("/square/8").get_json()
        other = threads.test_client().get("/square/3").get_json()

        pool = parallel.get_pool(processes)
        assert first["value"] == 49
        assert again["value"] == 64
        assert first["pid"] in worker_pids(pool)
        assert again["pid"] in worker_pids(pool)
        assert first["pid"] != os.getpid()
        assert (pool.workers, pool.start, pool.backend) == (2, "spawn", "process")
        # the same pool for every request, not one per request
        assert first["pool"] == again["pool"] == "crunch"

        thread_pool = parallel.get_pool(threads)
        assert other == {"value": 9, "pid": os.getpid(), "pool": "io", "backend": "thread"}
        assert thread_pool is not pool
        assert thread_pool.workers == 3
    finally:
        parallel.get_pool(processes).shutdown()
        parallel.get_pool(threads).shutdown()


def test_no_pool_is_made_until_first_used() -> None:
    parallel = MakeParallel()
    before = set(map(id, mp.pool.live_pools()))
    app = make_app("lazy", parallel, MAKEPARALLEL_BACKEND="thread")
    assert set(map(id, mp.pool.live_pools())) == before
    with app.app_context():
        pool = parallel.pool
    assert id(pool) not in before
    assert parallel.get_pool(app) is pool
    pool.shutdown()


def test_a_misspelt_setting_is_an_error_naming_the_known_ones() -> None:
    app = flask.Flask("typo")
    app.config["MAKEPARALLEL_WORKES"] = 2
    with pytest.raises(ValueError, match=r"MAKEPARALLEL_WORKES.*MAKEPARALLEL_WORKERS"):
        MakeParallel(app)


def test_outside_an_app_context_the_error_says_how_to_reach_the_pool() -> None:
    parallel = MakeParallel()
    with pytest.raises(RuntimeError, match=r"get_pool\(app\)"):
        _ = parallel.pool
    other = flask.Flask("not-set-up")
    with pytest.raises(RuntimeError, match=r"init_app\(app\)"):
        parallel.get_pool(other)


def test_without_flask_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)
    monkeypatch.delitem(sys.modules, "makeparallel.integrations.flask")
    with pytest.raises(ImportError, match=r'pip install "makeparallel\[flask\]"'):
        importlib.import_module("makeparallel.integrations.flask")


def test_at_exit_the_pool_is_closed_within_its_shutdown_timeout(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    write_program(
        script,
        """
        import time
        import flask
        from makeparallel.integrations.flask import MakeParallel

        app = flask.Flask("exiting")
        app.config.update(MAKEPARALLEL_WORKERS=1, MAKEPARALLEL_SHUTDOWN_TIMEOUT=1)
        parallel = MakeParallel(app)
        pool = parallel.get_pool(app)
        handle = pool.submit(time.sleep, 60)
        while not handle.running():
            time.sleep(0.01)
        print(pool.workers_info()[0]["pid"])
        """,
    )
    started = time.monotonic()
    done = run_program(script, timeout=30)
    # the sleeping task was stopped one second after exit began, not waited for
    assert time.monotonic() - started < 20
    worker = int(done.stdout.split()[-1])
    wait_until(lambda: not alive(worker), 10.0, "the worker to exit")


def test_a_forked_server_process_gets_a_pool_of_its_own(tmp_path: Path) -> None:
    # as gunicorn --preload does: the app (and here its pool) exists before the fork
    script = tmp_path / "preload.py"
    write_program(
        script,
        """
        import json, os, sys
        import flask
        from makeparallel.integrations.flask import MakeParallel

        app = flask.Flask("preloaded")
        app.config.update(MAKEPARALLEL_WORKERS=1, MAKEPARALLEL_BACKEND="thread")
        parallel = MakeParallel(app)
        parent_pool = parallel.get_pool(app)
        parent_pool.submit(abs, -1).result(timeout=30)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            pool = parallel.get_pool(app)
            found = {"new": pool is not parent_pool, "value": pool.submit(abs, -5).result(30),
                     "same_again": parallel.get_pool(app) is pool}
            os.write(write, json.dumps(found).encode())
            pool.shutdown()
            os._exit(0)
        os.close(write)
        os.waitpid(child, 0)
        print(os.read(read, 1000).decode())
        print(parallel.get_pool(app) is parent_pool)
        """,
    )
    child, parent_kept = run_program(script, timeout=60).stdout.split("\n")[:2]
    assert json.loads(child) == {"new": True, "value": 5, "same_again": True}
    assert parent_kept == "True"
