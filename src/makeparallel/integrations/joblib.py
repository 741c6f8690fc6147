"""joblib and scikit-learn: a joblib backend named "makeparallel".

    register()
    with joblib.parallel_config(backend="makeparallel", n_jobs=4):
        Parallel()(delayed(f)(x) for x in xs)       # batches run on makeparallel workers
        cross_val_score(model, X, y, n_jobs=4)        # so does scikit-learn's work

    joblib.Parallel --configure--> a Pool: the caller's (pool=...), or one kept for reuse
                    --submit-----> pool.submit(batch) --> Handle --done--> joblib's callback
                    --abort------> cancel every outstanding handle (running ones are killed)

Batches are sized as joblib sizes them for its own process backends (it
grows them until one takes a fraction of a second). ``require="sharedmem"``
and ``prefer="threads"`` run on makeparallel's thread engine; anything else
on worker processes, whose native libraries (OpenMP, BLAS) share the CPUs
among them. A ``Parallel`` inside a task runs sequentially, in
that task: workers never wait for other workers. A pool passed in by the
caller is never shut down here; the ones this module makes are kept for
the next ``Parallel`` call, as joblib keeps its own, and closed at exit.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal

from . import missing

try:
    import joblib
    from joblib._parallel_backends import (
        AutoBatchingMixin,
        FallbackToBackend,
        ParallelBackendBase,
        SequentialBackend,
    )
except ImportError as error:
    raise ImportError(missing("joblib", "joblib", "makeparallel.integrations.joblib")) from error

from .._sizing import usable_cpus
from ..handle import Handle
from ..pool import Pool
from ..task import current_task

__all__ = ["NAME", "MakeParallelBackend", "register", "shutdown"]

NAME = "makeparallel"


def register(make_default: bool = False) -> None:
    """Make ``backend="makeparallel"`` known to joblib (and the default with ``make_default``)."""
    joblib.register_parallel_backend(NAME, MakeParallelBackend, make_default=make_default)


class _Kept:
    """The pools this module made, one per engine, reused by the next ``Parallel`` call.

    A call that needs another size replaces the kept pool; the old one is shut
    down once no ``Parallel`` call uses it any more.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pools: dict[Literal["thread", "process"], Pool] = {}
        self.users: dict[Pool, int] = {}
        self.sizes: weakref.WeakKeyDictionary[Pool, tuple[int, int | None]] = (
            weakref.WeakKeyDictionary()
        )

    def take(
        self, kind: Literal["thread", "process"], workers: int, threads_each: int | None
    ) -> Pool:
        with self.lock:
            pool = self.pools.get(kind)
            usable = pool is not None and pool._open and pool._pid == os.getpid()
            wanted = (workers, threads_each)
            if pool is None or not usable or self.sizes.get(pool) != wanted:
                if pool is not None and usable and not self.users.get(pool):
                    pool.shutdown(wait=False)
                if threads_each is None:
                    pool = Pool(workers=workers, backend=kind, name=f"joblib-{kind}")
                else:
                    pool = Pool(
                        workers=workers,
                        backend=kind,
                        name=f"joblib-{kind}",
                        initializer=limit_threads,
                        initargs=(threads_each,),
                    )
                self.pools[kind] = pool
                self.sizes[pool] = wanted
            self.users[pool] = self.users.get(pool, 0) + 1
            return pool

    def give_back(self, pool: Pool) -> None:
        with self.lock:
            left = self.users.pop(pool, 1) - 1
            if left:
                self.users[pool] = left
            elif pool not in self.pools.values() and pool._open:
                pool.shutdown(wait=False)

    def close(self, wait: bool) -> None:
        with self.lock:
            pools = list(self.pools.values())
            self.pools.clear()
        for pool in pools:
            pool.shutdown(wait=wait)


_kept = _Kept()


def shutdown(wait: bool = True) -> None:
    """Shut down the pools the backend made and kept for the next ``Parallel`` call.

    They close at exit anyway; this frees their workers sooner. A later call
    makes new ones. Pools passed in with ``pool=`` are not touched.
    """
    _kept.close(wait)


#: what limits the threads of native libraries (OpenMP, BLAS) in a worker
THREAD_LIMITS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
_limits: list[Any] = []  # threadpoolctl's limits, kept for the worker's life


def limit_threads(threads: int) -> None:
    """A worker's initializer: native libraries use at most ``threads`` threads each.

    Workers that each start a thread per CPU for their BLAS would fight for
    the same cores, as joblib's own process backend knows. The variables
    reach libraries the worker loads from now on; threadpoolctl (installed
    with scikit-learn) also limits those a forked worker already has.
    """
    for name in THREAD_LIMITS:
        os.environ[name] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _limits.append(threadpool_limits(limits=threads))


class MakeParallelBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib's side of a makeparallel pool; ``pool=`` runs the work on a pool of yours.

    Made by joblib: ``parallel_config(backend="makeparallel", pool=my_pool)``
    passes ``pool`` here.
    """

    default_n_jobs = -1  # chosen explicitly, this backend uses every CPU unless told
    supports_inner_max_num_threads = True  # parallel_config(inner_max_num_threads=...)
    supports_retrieve_callback = True
    supports_return_generator = True
    supports_timeout = True
    supports_sharedmem = True  # require="sharedmem" runs on the thread engine
    uses_threads = False

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        pool: Pool | None = None,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__(
            nesting_level=nesting_level,
            inner_max_num_threads=inner_max_num_threads,
            **backend_kwargs,
        )
        if pool is not None and not isinstance(pool, Pool):
            raise TypeError(f"pool must be a makeparallel Pool, got {type(pool).__name__}")
        self._own_pool = pool
        self._pool: Pool | None = None
        self._lock = threading.Lock()
        self._outstanding: set[Future[Any]] = set()

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if current_task() is not None:
            return 1  # inside a task: its workers are busy, so nested work runs here
        if n_jobs is None:
            n_jobs = self.default_n_jobs
        limit = self._own_pool.workers if self._own_pool is not None else usable_cpus()
        if n_jobs < 0:
            return max(limit + 1 + n_jobs, 1)
        return min(n_jobs, limit) if self._own_pool is not None else n_jobs

    def configure(
        self,
        n_jobs: int | None = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        **backend_kwargs: Any,
    ) -> int:
        workers = self.effective_n_jobs(n_jobs)
        if workers == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        threads = require == "sharedmem" or prefer == "threads"
        own = self._own_pool
        if own is not None and (not threads or own.backend == "thread"):
            self._pool = own
        else:
            threads_each = None
            if not threads:
                threads_each = self.inner_max_num_threads or max(usable_cpus() // workers, 1)
            self._pool = _kept.take("thread" if threads else "process", workers, threads_each)
        self.parallel = parallel
        return workers

    def submit(self, func: Callable[[], Any], callback: Callable[[Any], Any] | None = None) -> Any:
        if self._pool is None:
            raise RuntimeError("the makeparallel joblib backend was used before configure()")
        handle = self._pool.submit(func)
        with self._lock:
            self._outstanding.add(handle)
        handle.add_done_callback(self._forget)
        if callback is not None:
            handle.add_done_callback(callback)
        return handle

    def _forget(self, handle: Future[Any]) -> None:
        with self._lock:
            self._outstanding.discard(handle)

    def retrieve_result_callback(self, out: Handle[Any]) -> Any:
        return out.result()

    def retrieve_result(self, out: Handle[Any], timeout: float | None = None) -> Any:
        return out.result(timeout=timeout)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        # One batch failed: the others' results will not be used. Cancel them all -
        # a running one's worker is killed and replaced, so the pool stays ready.
        with self._lock:
            outstanding = list(self._outstanding)
        for handle in outstanding:
            handle.cancel()

    def terminate(self) -> None:
        # The end of a Parallel call: the pool stays (the caller's, or kept for reuse).
        if self._pool is not None and self._pool is not self._own_pool:
            _kept.give_back(self._pool)
        self._pool = None
        self.reset_batch_stats()

    def get_nested_backend(self) -> tuple[Any, int | None]:
        return SequentialBackend(nesting_level=(self.nesting_level or 0) + 1), None
