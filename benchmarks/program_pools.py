"""How each contender of ``whole_program.py`` starts its pool and maps, inside the programs it runs.

The programs (``program_*.py``) import this module at the top, as a
program imports its pool library. It imports nothing itself when it is
imported: each library is imported by the contender that uses it, so no
program pays for another contender's imports, and a worker that imports the
program again (``spawn`` and ``forkserver`` do) finds nothing heavy here.

Contender keys: ``serial`` (a loop in the program), ``makeparallel``
(``mp.parallel_map`` on the default pool; ``mp.Pool()`` where a pool is
needed), ``makeparallel_fork`` (``mp.Pool(start="fork")``), ``ppe_fork``,
``ppe_forkserver``, ``ppe_spawn`` (``ProcessPoolExecutor`` with that
multiprocessing context), ``mp_pool`` (``multiprocessing.Pool``) and
``joblib`` (``joblib.Parallel``, its default loky backend and batching).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Executor
    from typing import Any


def executor(key: str, workers: int) -> Executor:
    """A pool with ``submit`` and ``map``: makeparallel's, or a ``ProcessPoolExecutor``."""
    if key == "makeparallel":
        import makeparallel as mp

        return mp.Pool(workers)
    if key == "makeparallel_fork":
        import makeparallel as mp

        return mp.Pool(workers, start="fork")
    if key == "makeparallel_spawn":
        import makeparallel as mp

        return mp.Pool(workers, start="spawn")
    if key.startswith("ppe_"):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(key[4:]))
    raise ValueError(f"no pool is called {key!r}")


def map_all(
    key: str,
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    workers: int,
    chunksize: int | None = None,
) -> list[Any]:
    """``[fn(x) for x in items]`` as the contender ``key`` runs it, with its pool's shutdown.

    ``chunksize`` goes to ``ProcessPoolExecutor.map``, ``multiprocessing.Pool.map``
    and makeparallel's ``Pool.map``; None leaves each at its default.
    """
    if key == "serial":
        return [fn(x) for x in items]
    if key == "makeparallel":
        import makeparallel as mp

        return mp.parallel_map(fn, items)
    if key == "mp_pool":
        import multiprocessing

        with multiprocessing.Pool(workers) as pool:
            return pool.map(fn, items, chunksize)
    if key == "joblib":
        from joblib import Parallel, delayed  # type: ignore[import-untyped]

        return list(Parallel(n_jobs=workers)(delayed(fn)(x) for x in items))
    with executor(key, workers) as pool:
        if chunksize is None:
            return list(pool.map(fn, items))
        return list(pool.map(fn, items, chunksize=chunksize))
