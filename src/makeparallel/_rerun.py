"""``Handle.rerun_inline()``: a finished task's call, run again in the calling thread.

What is kept, and for how long: the pool keeps each task's function and
arguments on the handle (a tuple: a reference to the task itself would make
a cycle that only the garbage collector frees) while the task lives, and drops them
when it succeeds - a program that submits millions of tasks must not keep
their arguments alive through the handles it still holds. A task that
failed, timed out, was cancelled or refused keeps them, since that is the
task one wants to debug. Debug mode (``MAKEPARALLEL_DEBUG=1``,
``configure(debug=True)``) keeps them for every task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._worker import context as task_api

if TYPE_CHECKING:
    from .handle import Handle


def rerun(handle: Handle[Any]) -> Any:
    if not handle.done():
        raise RuntimeError(
            f"{handle} has not finished; wait for it (result(), or mp.gather) before "
            "rerun_inline(), or call its function yourself"
        )
    call: tuple[Any, tuple[Any, ...], dict[str, Any]] | None = handle._call
    if call is None:
        raise RuntimeError(
            f"{handle}: the arguments of a task that succeeded are not kept (they would "
            "use memory for as long as the handle lives); run with MAKEPARALLEL_DEBUG=1 "
            "or mp.configure(debug=True) to keep them for every task"
        )
    fn, args, kwargs = call
    context, token = task_api.enter(
        handle.task_id, handle.name, handle.metadata, max(1, handle.attempts), None, None
    )
    try:
        return fn(*args, **kwargs)
    finally:
        task_api.leave(context, token)
