"""Flask: an extension giving each app one pool per server process, set by app.config.

    parallel = MakeParallel()          # or MakeParallel(app)
    parallel.init_app(app)             # reads MAKEPARALLEL_* from app.config, starts nothing
        |
    parallel.pool (in a request, a CLI command, or parallel.get_pool(app))
        --> first use in this process: Pool(**options), closed at interpreter exit
        --> later uses, any request, any thread: the same pool

A pool is made on first use, not at ``init_app``: a server that forks its
workers after loading the app (gunicorn, uwsgi) gets one pool in each worker
process, made after the fork. It is never made or closed per request.

Tasks run in other processes, where there is no Flask app or request
context: ``current_app``, ``request``, ``g`` and ``session`` do not exist
there, and this extension never pushes them. Pass a task the plain values it
needs (``request.args["n"]``, ``app.config["X"]``), not the proxies.
"""

from __future__ import annotations

import inspect
from typing import Any

from . import missing

try:
    import flask
except ImportError as error:
    raise ImportError(missing("flask", "flask", "makeparallel.integrations.flask")) from error

from ..pool import Pool
from ._lazy import LazyPool

__all__ = ["MakeParallel"]

PREFIX = "MAKEPARALLEL_"
#: the extension's own setting; every other MAKEPARALLEL_X is Pool's parameter x
SHUTDOWN_TIMEOUT = PREFIX + "SHUTDOWN_TIMEOUT"
_POOL_KEYS = {
    PREFIX + name.upper(): name
    for name in inspect.signature(Pool.__init__).parameters
    if name != "self"
}


def pool_options(config: Any) -> dict[str, Any]:
    """``Pool`` keyword arguments from ``MAKEPARALLEL_*`` keys; a misspelt key is an error."""
    options: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith(PREFIX) or key == SHUTDOWN_TIMEOUT:
            continue
        if key not in _POOL_KEYS:
            known = ", ".join(sorted([*_POOL_KEYS, SHUTDOWN_TIMEOUT]))
            raise ValueError(f"unknown Flask setting {key}: the makeparallel settings are {known}")
        options[_POOL_KEYS[key]] = value
    return options


class MakeParallel:
    """The Flask extension: ``MakeParallel(app)``, or ``MakeParallel()`` then ``init_app(app)``.

    One extension object may serve several apps, each with its own settings
    and pool. Settings, read at ``init_app``: ``MAKEPARALLEL_WORKERS``,
    ``MAKEPARALLEL_BACKEND``, ``MAKEPARALLEL_START``, ``MAKEPARALLEL_MAX_PENDING``...
    - each ``Pool`` parameter in capitals - and ``MAKEPARALLEL_SHUTDOWN_TIMEOUT``
    (seconds the pool's tasks get at interpreter exit before they are
    stopped; 30 by default, None waits for them).
    """

    def __init__(self, app: flask.Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Read ``app.config`` (a misspelt ``MAKEPARALLEL_`` key is an error); starts nothing."""
        options = pool_options(app.config)
        timeout = app.config.get(SHUTDOWN_TIMEOUT, 30.0)
        options.setdefault("name", app.name)
        app.extensions["makeparallel"] = LazyPool(options, timeout)

    def get_pool(self, app: flask.Flask | None = None) -> Pool:
        """The pool of ``app`` (default: the current app) in this process."""
        if app is None:
            if not flask.has_app_context():
                raise RuntimeError(
                    "no Flask app is active here: pass the app (parallel.get_pool(app)) or "
                    "call this inside a request or an app context"
                )
            app = flask.current_app._get_current_object()  # type: ignore[attr-defined]
        state = app.extensions.get("makeparallel")
        if state is None:
            raise RuntimeError(
                f"Flask app {app.name!r} has no makeparallel pool: call "
                "MakeParallel().init_app(app) when the app is created"
            )
        assert isinstance(state, LazyPool)
        return state.get()

    @property
    def pool(self) -> Pool:
        """The current app's pool (made on first use in this process)."""
        return self.get_pool()
