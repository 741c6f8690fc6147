"""Turning functions, arguments and results into bytes and back.

Plain pickle is tried first because it is several times faster for the
common case. cloudpickle takes over when plain pickle fails (lambdas,
closures, nested functions) and when the plain output refers to ``__main__``:
a worker process is not running the user's script, so anything defined there
must travel by value. Both directions use the same rule, in the parent and
in the workers.

This module is imported by worker processes: it must stay light and must not
import the rest of the package at module level.
"""

from __future__ import annotations

import _pickle as pickle  # the C pickler itself: pickle.py would import re and more
import reprlib

TYPE_CHECKING = False  # no typing import at run time: workers import this module
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PROTOCOL = 5  # out-of-band buffers

_MAIN_MARKER = b"__main__"
# what plain pickle writes as a reference (module + qualified name), never by value
_REFERENCED_KINDS = (type(len), type(lambda: None), type)


def dumps(obj: object) -> bytes:
    """Serialize ``obj``; raise the pickling error when neither pickler can."""
    return _dumps(obj, None)[0]


def dumps_with_buffers(obj: object) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Serialize ``obj``, leaving large binary buffers out of the pickle.

    NumPy arrays, ``bytearray`` and ``PickleBuffer`` objects (pickle protocol
    5) come back as separate buffers that are written to the socket straight
    from the object's own memory, so a 100 MB array is not first copied into
    a 100 MB pickle. ``loads(data, buffers)`` puts them back.
    """
    buffers: list[pickle.PickleBuffer] = []
    data, _ = _dumps(obj, buffers)
    return data, buffers


def _dumps(obj: object, buffers: list[pickle.PickleBuffer] | None) -> tuple[bytes, bool]:
    """Plain pickle, else cloudpickle; also whether plain pickle did it.

    ``buffers``: where out-of-band buffers go (None: keep them in the pickle).
    """
    callback = None if buffers is None else buffers.append
    try:
        data = pickle.dumps(obj, PROTOCOL, buffer_callback=callback)
    except (pickle.PicklingError, TypeError, AttributeError):
        pass
    else:
        if _MAIN_MARKER not in data:
            return data, True
        # A reference to __main__ would not resolve in a worker (or, for a
        # worker's result, would point at the worker's bootstrap module).
    if buffers is not None:
        buffers.clear()
    return _cloud_dumps(obj, callback), False


class LargeBytes:
    """Stands in for a large ``bytes`` argument so that it travels out of band.

    Plain pickle always copies ``bytes`` into the pickle; this wrapper unpickles
    as the very same ``bytes`` value, built from the received buffer.
    """

    __slots__ = ("data",)
    THRESHOLD = 1 << 16

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: object) -> tuple[type[bytes], tuple[pickle.PickleBuffer]]:
        return bytes, (pickle.PickleBuffer(self.data),)


def out_of_band(value: Any) -> Any:
    """``value``, or a ``LargeBytes`` stand-in when it is a large ``bytes`` object."""
    if type(value) is bytes and len(value) >= LargeBytes.THRESHOLD:
        return LargeBytes(value)
    return value


def dumps_function(fn: object) -> tuple[bytes, bool]:
    """Serialize a function; also say whether the bytes are a mere reference to it
    (module and name), which stays valid for as long as the function exists."""
    data, plain = _dumps(fn, None)
    return data, plain and isinstance(fn, _REFERENCED_KINDS)


def dumps_reference(obj: object) -> bytes:
    """Plain pickle, even of what ``__main__`` defines: for a copy forked from this process,
    whose ``__main__`` has it."""
    return pickle.dumps(obj, PROTOCOL)


def loads(data: bytes | bytearray | memoryview, buffers: Any = ()) -> Any:
    return pickle.loads(data, buffers=buffers)


def _cloud_dumps(
    obj: object, buffer_callback: Callable[[pickle.PickleBuffer], object] | None = None
) -> bytes:
    import cloudpickle  # type: ignore[import-untyped]

    data: bytes = cloudpickle.dumps(obj, PROTOCOL, buffer_callback=buffer_callback)
    return data


def describe_unpicklable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Name the first argument that cannot be serialized, for an error message."""
    for index, value in enumerate(args):
        problem = _why_not_picklable(value)
        if problem is not None:
            return f"argument {index} (a {type_name(value)}: {problem})"
    for key, value in kwargs.items():
        problem = _why_not_picklable(value)
        if problem is not None:
            return f"keyword argument {key!r} (a {type_name(value)}: {problem})"
    return "the arguments"


def type_name(value: object) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _why_not_picklable(value: object) -> str | None:
    try:
        dumps(value)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = 5
_REPR.maxtuple = 5
_REPR.maxdict = 5
_REPR.maxlevel = 3


def short_repr(value: object) -> str:
    """A bounded repr for error messages; never raises."""
    try:
        return _REPR.repr(value)
    except Exception:
        return f"<{type(value).__qualname__} object>"


def short_call_repr(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [short_repr(a) for a in args[:6]]
    if len(args) > 6:
        parts.append("...")
    parts.extend(f"{k}={short_repr(v)}" for k, v in list(kwargs.items())[:6])
    text = "(" + ", ".join(parts) + ")"
    return text if len(text) <= 200 else text[:197] + "..."
