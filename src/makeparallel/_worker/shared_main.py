"""One namespace in a worker for the functions of the parent's ``__main__``.

A function defined in the user's script travels to a worker by value
(cloudpickle), with a copy of the globals it reads. Unpickled one by one,
each function would get a namespace of its own, so a global that the pool's
initializer sets (``global db; db = connect()``) would be invisible to the
tasks, which read their own copy: a ``NameError``, or the script's
``db = None``. Here every such function loaded as a task's function or as
the initializer shares one namespace, as the functions of a module do:

* in a forked worker, the copy of the parent's ``__main__`` that the fork
  made (where functions sent by name already live);
* in a fresh interpreter, a namespace of its own, not the bootstrap's
  ``__main__`` (whose names, like ``main``, are not the user's).

A global a function brings replaces the one in the namespace unless code
in this worker has assigned that name since it was last brought: what the
initializer or a task set stays, and a value the parent changed before
sending a new function arrives with it, as before.

It relies on two names of cloudpickle's (``_make_function``,
``_function_setstate``); if they change, functions simply keep their own
namespaces again. Workers import this module: it must stay light.
"""

from __future__ import annotations

import _pickle
import builtins
import io
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CLOUDPICKLE = "cloudpickle.cloudpickle"
_BY_VALUE = b"_make_function"  # in the bytes of a function cloudpickle sent by value

_namespace: dict[str, Any] | None = None
_brought: dict[str, Any] = {}  # name -> the value a function last brought (or the fork made)
_forked = False  # this worker is a fork of the parent: its __main__ is the parent's copy


def in_forked_worker() -> None:
    """Called in a worker forked from the parent, before it serves."""
    global _forked
    _forked = True


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Unpickle a function (or a tuple holding one) sent by the parent."""
    if _BY_VALUE not in (data if isinstance(data, bytes | bytearray) else bytes(data)):
        return _pickle.loads(data)
    return _Unpickler(io.BytesIO(data)).load()


def namespace() -> dict[str, Any]:
    """The shared namespace (made on first use)."""
    global _namespace
    if _namespace is None:
        if _forked:
            _namespace = sys.modules["__main__"].__dict__
            _brought.update(_namespace)  # what the fork copied counts as brought
        else:
            _namespace = {"__name__": "__main__", "__builtins__": builtins}
    return _namespace


class _Unpickler(_pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == _CLOUDPICKLE and name in ("_make_function", "_function_setstate"):
            original = super().find_class(module, name)
            return _make_function(original) if name == "_make_function" else _setstate(original)
        return super().find_class(module, name)


def _make_function(original: Any) -> Any:
    def make(code: Any, globals_: dict[str, Any], *rest: Any) -> Any:
        if globals_.get("__name__") == "__main__":
            globals_ = namespace()
        return original(code, globals_, *rest)

    return make


def _setstate(original: Any) -> Any:
    def setstate(fn: Any, state: Any) -> Any:
        shared = _namespace
        if shared is not None and fn.__globals__ is shared:
            slots = state[1]
            incoming: dict[str, Any] = slots["__globals__"]
            kept = {
                key: value
                for key, value in incoming.items()
                if key not in shared or (key in _brought and shared[key] is _brought[key])
            }
            slots["__globals__"] = kept
            _brought.update(kept)
        return original(fn, state)

    return setstate
