"""What a map sees of its pool (``_mapping.ChunkPool``): chunks in, values out.

``_mapping`` knows nothing of ``Pool``; it runs a map through this small
port, which a pool makes once for all its maps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._task import ChunkValue, Task, short_name, unwrap_parallel
from .handle import Handle, next_task_id

if TYPE_CHECKING:
    from .pool import Pool


class MapPort:
    __slots__ = ("_pool",)

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @property
    def workers(self) -> int:
        return self._pool.workers

    def start_map(self, fn: Callable[..., Any]) -> tuple[Callable[..., Any], bytes | None]:
        pool = self._pool
        pool._check_open()
        pool._refuse_to_wait_here("a map")
        fn, reference = unwrap_parallel(fn)
        if reference is not None:
            return fn, reference
        probe = Task(fn, (), {}, Handle(0, short_name(fn)), items=[])
        pool._backend.prepare(probe)  # the function pickled once for all the chunks
        return fn, probe.fn_data

    def submit_chunk(
        self,
        fn: Callable[..., Any],
        items: list[Any],
        first_index: int,
        fn_data: bytes | None,
        item_timeout: float | None,
        star: bool,
    ) -> Handle[ChunkValue]:
        pool = self._pool
        pool._check_open()
        handle: Handle[ChunkValue] = Handle(next_task_id(), short_name(fn), None, pool._canceller)
        timeout = None if item_timeout is None else item_timeout * len(items)
        task = Task(
            fn,
            (),
            {},
            handle,
            items=items,
            star=star,
            first_index=first_index,
            fn_data=fn_data,
            timeout=timeout,
        )
        pool._tasks.enqueue(task)
        return handle

    def may_run_inline(self) -> bool:
        """Whether a map whose items cost less than their trip may run them in the caller.

        Not when workers are set up for the function (an initializer, a memory
        limit) or the work is sent to an outside executor on purpose.
        """
        backend = self._pool._backend
        return (
            backend.kind in ("process", "thread")
            and backend.setup.initializer is None
            and backend.setup.memory_limit is None
        )

    def take_back(self, handle: Handle[ChunkValue]) -> bool:
        return self._pool._tasks.withdraw(handle)

    def run_chunk_here(
        self, fn: Callable[..., Any], items: list[Any], first_index: int, star: bool
    ) -> tuple[list[Any], dict[int, BaseException]]:
        from .backends._inline import run_here

        handle: Handle[ChunkValue] = Handle(next_task_id(), short_name(fn))
        task = Task(fn, (), {}, handle, items=items, star=star, first_index=first_index)
        _, (values, errors, _) = run_here(task, None)
        return values, errors
