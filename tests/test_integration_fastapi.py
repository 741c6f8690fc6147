"""FastAPI: the app owns a pool for its life, CPU work runs in its workers, 503 when full."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("asgi_lifespan")

import httpx
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI

import makeparallel as mp
from makeparallel.integrations.fastapi import get_pool, setup
from polling import alive, wait_until
from processes import worker_pids

Pooled = Annotated[mp.Pool, Depends(get_pool)]


def spin(seconds: float, meeting: str) -> tuple[int, float, float]:
    """Keep a CPU busy for ``seconds``, once the other task has started too (each leaves a
    file in ``meeting``); say where and when (wall clock, comparable across processes)."""
    Path(meeting, str(os.getpid())).touch()
    deadline = time.monotonic() + 30
    while len(os.listdir(meeting)) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the other task never started alongside this one")
        time.sleep(0.002)
    start = time.time()
    while time.time() - start < seconds:
        pass
    return os.getpid(), start, time.time()


def make_app(**options: object) -> FastAPI:
    app = FastAPI()
    setup(app, **options)

    @app.get("/spin")
    async def spin_route(seconds: float, meeting: str, pool: Pooled) -> dict[str, float]:
        pid, start, end = await pool.submit(spin, seconds, meeting)
        return {"pid": pid, "start": start, "end": end}

    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


def test_concurrent_requests_run_in_parallel_in_workers_that_end_with_the_app(
    tmp_path: Path,
) -> None:
    app = make_app(workers=2, start="spawn")

    async def scenario() -> tuple[list[dict[str, float]], list[int]]:
        async with LifespanManager(app), client(app) as http:
            pool = app.state.makeparallel_pool
            await asyncio.to_thread(
                wait_until, lambda: pool.health().workers_alive == 2, 30.0, "both workers"
            )
            pids = worker_pids(pool)
            query = {"seconds": 0.3, "meeting": str(tmp_path)}
            answers = await asyncio.gather(
                http.get("/spin", params=query), http.get("/spin", params=query)
            )
            assert [a.status_code for a in answers] == [200, 200]
            return [a.json() for a in answers], pids

    (first, second), pids = asyncio.run(scenario())
    assert {first["pid"], second["pid"]} == set(pids)
    assert os.getpid() not in pids
    # each task started before the other ended: they ran at the same time
    assert first["start"] < second["end"]
    assert second["start"] < first["end"]
    for pid in pids:
        wait_until(lambda pid=pid: not alive(pid), 10.0, f"worker {pid} to exit")


def test_health_route_answers_the_pool_report() -> None:
    app = make_app(workers=1, backend="thread", health_path="/healthz")

    async def scenario() -> tuple[int, dict[str, object], int]:
        async with LifespanManager(app), client(app) as http:
            answer = await http.get("/healthz")
            pool = app.state.makeparallel_pool
            # a pool that is shutting down is not healthy
            await asyncio.to_thread(pool.shutdown)
            closed = await http.get("/healthz")
            return answer.status_code, answer.json(), closed.status_code

    status, body, closed_status = asyncio.run(scenario())
    assert status == 200
    assert body["healthy"] is True
    assert body["pool"] == "asgi"
    assert body["workers_expected"] == 1
    assert closed_status == 503


def test_a_full_queue_answers_503_with_retry_after() -> None:
    app = FastAPI()
    setup(app, workers=1, backend="thread", max_pending=1, retry_after=7)
    release = threading.Event()

    @app.get("/block")
    async def block(pool: Pooled) -> dict[str, bool]:
        return {"released": await pool.submit(release.wait, 30)}

    async def scenario() -> httpx.Response:
        async with LifespanManager(app), client(app) as http:
            pool = app.state.makeparallel_pool
            running = asyncio.ensure_future(http.get("/block"))
            await asyncio.to_thread(
                wait_until, lambda: pool.health().tasks_running == 1, 10.0, "the first task"
            )
            waiting = asyncio.ensure_future(http.get("/block"))
            await asyncio.to_thread(
                wait_until, lambda: pool.health().queue_depth == 1, 10.0, "a queued task"
            )
            refused = await http.get("/block")
            release.set()
            assert (await running).status_code == 200
            assert (await waiting).status_code == 200
            return refused

    refused = asyncio.run(scenario())
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "7"
    assert "busy" in refused.json()["detail"]


def test_the_apps_own_lifespan_runs_inside_the_pools() -> None:
    seen: list[object] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        seen.append(get_pool_of(app))
        yield
        seen.append(get_pool_of(app))

    def get_pool_of(app: FastAPI) -> object:
        return app.state.makeparallel_pool

    app = FastAPI(lifespan=own)
    setup(app, workers=1, backend="thread")

    async def scenario() -> None:
        async with LifespanManager(app):
            pass

    asyncio.run(scenario())
    assert len(seen) == 2
    assert all(isinstance(pool, mp.Pool) for pool in seen)


def test_get_pool_without_setup_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/")
    async def root(pool: Pooled) -> None:
        return None

    async def scenario() -> None:
        async with client(app) as http:
            await http.get("/")

    with pytest.raises(RuntimeError, match=r"setup\(app\)"):
        asyncio.run(scenario())


def test_without_fastapi_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "starlette.requests", None)
    monkeypatch.delitem(sys.modules, "makeparallel.integrations.fastapi")
    with pytest.raises(ImportError, match=r'pip install "makeparallel\[fastapi\]"'):
        importlib.import_module("makeparallel.integrations.fastapi")


def test_setup_after_the_app_started_is_an_error() -> None:
    app = make_app(workers=1, backend="thread")

    async def scenario() -> None:
        async with LifespanManager(app):
            setup(app, workers=1)

    with pytest.raises(RuntimeError, match="before the app starts"):
        asyncio.run(scenario())


def test_a_plain_starlette_app_reaches_the_pool_from_the_request() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from makeparallel.integrations.fastapi import pool_of

    async def total(request: Request) -> JSONResponse:
        return JSONResponse({"total": await pool_of(request).submit(sum, [1, 2, 3])})

    app = Starlette(routes=[Route("/total", total)])
    setup(app, workers=1, backend="thread")

    async def scenario() -> tuple[dict[str, int], int]:
        async with LifespanManager(app), client(app) as http:
            answer = await http.get("/total")
            health = await http.get("/health/pool")
            return answer.json(), health.status_code

    assert asyncio.run(scenario()) == ({"total": 6}, 200)
