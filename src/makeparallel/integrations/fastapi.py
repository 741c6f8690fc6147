"""FastAPI and Starlette: a pool that lives as long as the app, reached by a dependency.

    app = FastAPI()
    setup(app, workers=4)                  # before the server starts
        |
        +-- lifespan: startup  --> Pool(...) in the server's worker process --> app.state
        |             shutdown --> pool.shutdown(timeout=...) in a thread (the loop keeps running)
        +-- exception handler: PoolFullError --> 503 with Retry-After
        +-- GET /health/pool: pool.health().to_dict(), 200 when healthy, else 503

    async def endpoint(pool: Pool = Depends(get_pool)):
        return await pool.submit(crunch, n)  # the loop waits without blocking

The pool is made when the lifespan starts, so in a server that forks its
workers (``uvicorn --workers 4``, gunicorn) each server process gets its own
pool, made after the fork. This module never runs a blocking call on the
event loop: shutting the pool down happens in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from . import missing

try:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
except ImportError as error:  # pragma: no cover - shown by a test that hides starlette
    message = missing("starlette", "fastapi", "makeparallel.integrations.fastapi")
    raise ImportError(message) from error

from ..errors import PoolFullError
from ..pool import Pool

__all__ = ["get_pool", "pool_full_response", "pool_lifespan", "pool_of", "setup"]

#: where the pool is kept on ``app.state``
STATE_KEY = "makeparallel_pool"


@asynccontextmanager
async def pool_lifespan(
    app: Any, *, shutdown_timeout: float | None = 30.0, **pool_options: Any
) -> AsyncIterator[Pool]:
    """Own a pool for the life of ``app``: made on entry, shut down on exit.

    Use it inside a lifespan of your own (``setup`` does that for you).
    ``pool_options`` are ``Pool``'s. With ``max_pending`` and no
    ``pending_timeout``, a full queue fails at once (``pending_timeout=0``)
    rather than make ``submit`` wait, which would hold up the event loop.
    On exit the pool finishes its tasks, and stops those still running after
    ``shutdown_timeout`` seconds (None: waits for them).
    """
    if pool_options.get("max_pending") is not None:
        pool_options.setdefault("pending_timeout", 0)
    pool_options.setdefault("name", "asgi")
    pool = Pool(**pool_options)
    setattr(app.state, STATE_KEY, pool)
    try:
        yield pool
    finally:
        setattr(app.state, STATE_KEY, None)
        await asyncio.to_thread(pool.shutdown, wait=True, timeout=shutdown_timeout)


async def get_pool(request: Request) -> Pool:
    """A dependency: ``pool: Pool = Depends(get_pool)`` gives the app's pool.

    (A coroutine because FastAPI runs a plain function dependency in a thread.)
    """
    return pool_of(request)


def pool_of(request: Request) -> Pool:
    """The app's pool, from a request (for Starlette routes, without ``Depends``)."""
    pool = getattr(request.app.state, STATE_KEY, None)
    if pool is None:
        raise RuntimeError(
            "this app has no makeparallel pool: call "
            "makeparallel.integrations.fastapi.setup(app) before the server starts, "
            "or enter pool_lifespan(app) in the app's own lifespan"
        )
    if not isinstance(pool, Pool):
        raise TypeError(f"app.state.{STATE_KEY} is not a Pool: {pool!r}")
    return pool


def pool_full_response(retry_after: int = 1) -> Callable[[Request, Exception], Response]:
    """An exception handler answering ``PoolFullError`` with 503 and ``Retry-After``."""

    def handler(request: Request, error: Exception) -> Response:
        return JSONResponse(
            {"detail": f"the server is busy: {error}"},
            status_code=503,
            headers={"Retry-After": str(retry_after)},
        )

    return handler


def setup(
    app: Any,
    *,
    health_path: str | None = "/health/pool",
    retry_after: int = 1,
    shutdown_timeout: float | None = 30.0,
    **pool_options: Any,
) -> None:
    """Give a FastAPI or Starlette ``app`` a pool for its life; call before it starts.

    The app's own lifespan, if it has one, runs inside the pool's: the pool
    exists while it starts up and shuts down. ``PoolFullError`` becomes a 503
    answer with ``Retry-After: retry_after``; ``health_path`` (None: no
    route) answers ``pool.health().to_dict()``, with 200 when the pool is
    healthy and 503 when it is not. ``pool_options`` are ``Pool``'s.
    """
    if retry_after < 0:
        raise ValueError(f"retry_after must be >= 0 seconds, got {retry_after}")
    if getattr(app, "middleware_stack", None) is not None:
        # its exception handlers and lifespan are fixed once it has started
        raise RuntimeError("setup(app) must be called before the app starts serving")
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with (
            pool_lifespan(app, shutdown_timeout=shutdown_timeout, **pool_options),
            inner(app) as state,
        ):
            yield state

    app.router.lifespan_context = lifespan
    app.add_exception_handler(PoolFullError, pool_full_response(retry_after))
    if health_path is not None:

        async def pool_health(request: Request) -> Response:
            report = pool_of(request).health()
            return JSONResponse(report.to_dict(), status_code=200 if report.healthy else 503)

        app.add_route(health_path, pool_health, methods=["GET"], include_in_schema=False)
