"""Django: a pool configured by ``settings.MAKEPARALLEL``, with workers that can use the ORM.

    INSTALLED_APPS = [..., "makeparallel.integrations.django"]
    MAKEPARALLEL = {"workers": 4, "max_pending": 100}   # Pool's options, plus "shutdown_timeout"

    from makeparallel.integrations.django import get_pool
    get_pool().submit(rebuild_index, shop.pk)           # the pool is made on first use

Worker processes are set up for Django before their first task: a fresh
interpreter runs ``django.setup()`` (with the parent's
``DJANGO_SETTINGS_MODULE``); a forked one already has the apps loaded and
drops, without closing, the database connections it inherited, which still
belong to the parent. After each call, the worker closes its connections
as Django does after a request (those past ``CONN_MAX_AGE``, 0 by default,
or broken), so no task leaves a connection open or a transaction behind.

The app's ``ready()`` only checks the settings; it starts nothing.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .. import missing

try:
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
except ImportError as error:
    raise ImportError(missing("django", "django", "makeparallel.integrations.django")) from error

from ..._arguments import worker_setup
from ..._map_port import MapPort
from ..._task import short_name, unwrap_parallel
from ..._worker.state import in_worker
from ...handle import Handle
from ...pool import Pool
from .._lazy import LazyPool

__all__ = ["DjangoPool", "get_pool", "pool_options"]

#: the setting's own keys; the others are Pool's parameters
SHUTDOWN_TIMEOUT = "shutdown_timeout"
_POOL_KEYS = frozenset(inspect.signature(Pool.__init__).parameters) - {"self"}


def pool_options() -> tuple[dict[str, Any], float | None]:
    """``settings.MAKEPARALLEL`` checked: Pool's options, and the shutdown timeout.

    Raises ``ImproperlyConfigured`` naming the problem; makes no pool.
    """
    configured = getattr(settings, "MAKEPARALLEL", {})
    if not isinstance(configured, dict):
        raise ImproperlyConfigured(
            f"settings.MAKEPARALLEL must be a dict of Pool options, got {type(configured).__name__}"
        )
    options = dict(configured)
    timeout = options.pop(SHUTDOWN_TIMEOUT, 30.0)
    unknown = sorted(set(options) - _POOL_KEYS)
    if unknown:
        known = ", ".join(sorted([*_POOL_KEYS, SHUTDOWN_TIMEOUT]))
        raise ImproperlyConfigured(
            f"settings.MAKEPARALLEL has unknown key(s) {', '.join(unknown)}; the keys are {known}"
        )
    try:
        worker_setup(
            options.get("workers"),
            options.get("min_workers"),
            options.get("max_workers"),
            options.get("idle_timeout"),
            options.get("max_tasks_per_worker"),
            options.get("memory_limit"),
            options.get("memory_limit_action", "recycle"),
            options.get("initializer"),
            options.get("initargs", ()),
            options.get("start", "auto"),
            options.get("forward_logs", True),
        )
    except (TypeError, ValueError) as error:
        raise ImproperlyConfigured(f"settings.MAKEPARALLEL: {error}") from error
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise ImproperlyConfigured(
            f"settings.MAKEPARALLEL['shutdown_timeout'] must be seconds or None, got {timeout!r}"
        )
    return options, timeout


def setup_worker(
    settings_module: str | None,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
) -> None:
    """The worker's initializer: Django ready to use, then the user's own initializer."""
    from django.apps import apps

    if apps.ready:
        if in_worker():  # a forked process (a thread of this one has no connections yet)
            _forget_inherited_connections()
    else:
        if settings_module is None and not settings.configured:
            raise ImproperlyConfigured(
                "a fresh worker process cannot load Django's settings: they were set with "
                "settings.configure(), not a DJANGO_SETTINGS_MODULE; use a settings module, "
                "or MAKEPARALLEL = {'start': 'fork', ...}"
            )
        if settings_module is not None:
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
        django.setup()
    if initializer is not None:
        initializer(*initargs)


_inherited: list[Any] = []  # kept, never closed: closing would end the parent's session


def _forget_inherited_connections() -> None:
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _inherited.append(connection.connection)
            connection.connection = None


def close_connections() -> None:
    """Close this thread's connections as Django does after a request (not inside an
    ``atomic`` block: that would end the caller's transaction)."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


class AfterTask:
    """A task's function, then ``close_connections()``, whatever the function did.

    Not when the task runs in the thread that submitted it (``backend="serial"``):
    those connections are the caller's, in the middle of its own work.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.caller = threading.get_ident()
        self.__qualname__ = short_name(unwrap_parallel(fn)[0])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = unwrap_parallel(self.fn)[0]
        try:
            return fn(*args, **kwargs)
        finally:
            if in_worker() or threading.get_ident() != self.caller:
                close_connections()


class _Maps(MapPort):
    __slots__ = ()

    def start_map(self, fn: Callable[..., Any]) -> tuple[Callable[..., Any], bytes | None]:
        return super().start_map(AfterTask(fn))


class DjangoPool(Pool):
    """A ``Pool`` whose workers are set up for Django and whose tasks close their
    database connections when they end; takes ``Pool``'s arguments.

    ``initializer``, if given, runs in each worker after Django is set up.
    """

    def __init__(
        self,
        *args: Any,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        **options: Any,
    ) -> None:
        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
        super().__init__(
            *args,
            initializer=setup_worker,
            initargs=(settings_module, initializer, tuple(initargs)),
            **options,
        )

    def _submit_call(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        **options: Any,
    ) -> Handle[Any]:
        if not callable(fn):
            return super()._submit_call(fn, args, kwargs, **options)  # its error
        options["name"] = options.get("name") or short_name(unwrap_parallel(fn)[0])
        # the wrapper is sent instead: a @parallel function goes inside it, by reference
        options["fn_data"] = None
        return super()._submit_call(AfterTask(fn), args, kwargs, **options)

    @property
    def _maps(self) -> MapPort:
        return _Maps(self)


_lazy: LazyPool | None = None


def get_pool() -> Pool:
    """The pool of this process, made from ``settings.MAKEPARALLEL`` on first use."""
    global _lazy
    if _lazy is None:
        options, timeout = pool_options()
        options.setdefault("name", "django")
        _lazy = LazyPool(options, timeout, DjangoPool)
    return _lazy.get()
