"""joblib and scikit-learn on makeparallel workers: backend="makeparallel"."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("joblib")

from joblib import Parallel, delayed, parallel_config

import makeparallel as mp
from makeparallel.integrations.joblib import register, shutdown
from makeparallel.pool import live_pools
from processes import worker_pids

register()


@pytest.fixture(scope="module", autouse=True)
def _shut_down_the_kept_pools() -> Iterator[None]:
    yield
    shutdown()


def fail_or_sleep(i: int) -> int:
    if i == 0:
        raise ValueError("batch 0 failed")
    time.sleep(30)
    return i


def nested_pids() -> tuple[int, list[int]]:
    inner = Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(4))
    return os.getpid(), inner


def test_joblib_batches_run_only_in_the_pools_workers() -> None:
    with (
        mp.Pool(workers=2, name="for-joblib", start="spawn") as pool,
        parallel_config(backend="makeparallel", n_jobs=2, pool=pool),
    ):
        pids = Parallel()(delayed(os.getpid)() for _ in range(8))
        assert set(pids) <= set(worker_pids(pool))
        assert os.getpid() not in pids
        # the caller's pool is not shut down by joblib
        assert pool.submit(sum, [1, 2]).result(timeout=30) == 3
    assert len(pids) == 8


def test_without_a_pool_the_work_runs_in_worker_processes() -> None:
    with parallel_config(backend="makeparallel", n_jobs=2):
        squares = Parallel()(delayed(pow)(i, 2) for i in range(50))
        pids = set(Parallel()(delayed(os.getpid)() for _ in range(8)))
    assert squares == [i * i for i in range(50)]
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


def test_many_tiny_calls_are_batched() -> None:
    with mp.Pool(workers=2, start="spawn") as pool:
        with parallel_config(backend="makeparallel", n_jobs=2, pool=pool):
            results = Parallel()(delayed(abs)(-i) for i in range(20_000))
        done = pool.metrics().to_dict()
    assert results == list(range(20_000))
    # joblib grew its batches: far fewer tasks than calls reached the pool
    assert 0 < done["completed"] < 2_000


def test_a_failing_batch_stops_the_others_at_once() -> None:
    with mp.Pool(workers=2, start="spawn") as pool:
        started = time.monotonic()
        with (
            parallel_config(backend="makeparallel", n_jobs=2, pool=pool),
            pytest.raises(ValueError, match="batch 0 failed"),
        ):
            Parallel(batch_size=1)(delayed(fail_or_sleep)(i) for i in range(4))
        # the others would have slept for 30 s; they were cancelled (their workers
        # killed and replaced), so the pool is free again at once
        assert pool.submit(sum, [2, 3]).result(timeout=30) == 5
        assert time.monotonic() - started < 15


def test_sharedmem_runs_on_threads_of_this_process() -> None:
    seen: list[int] = []

    def note(i: int) -> tuple[int, bool]:
        seen.append(i)
        return os.getpid(), mp.current_task() is not None

    with parallel_config(backend="makeparallel", n_jobs=2):
        answers = Parallel(require="sharedmem")(delayed(note)(i) for i in range(10))
    assert sorted(seen) == list(range(10))
    # in this process, as makeparallel tasks (its thread engine), not joblib's own threads
    assert set(answers) == {(os.getpid(), True)}


def test_nested_parallel_calls_run_sequentially_inside_a_worker() -> None:
    with (
        mp.Pool(workers=2, start="spawn") as pool,
        parallel_config(backend="makeparallel", n_jobs=2, pool=pool),
    ):
        outer = Parallel()(delayed(nested_pids)() for _ in range(2))
    for worker, inner in outer:
        assert inner == [worker] * 4


def test_scikit_learn_cross_validation_matches_the_sequential_result() -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    x, y = make_classification(n_samples=200, n_features=8, random_state=0)
    model = LogisticRegression(max_iter=500)
    sequential = cross_val_score(model, x, y, cv=4, n_jobs=1)
    with (
        mp.Pool(workers=2, start="spawn") as pool,
        parallel_config(backend="makeparallel", pool=pool),
    ):
        parallel = cross_val_score(model, x, y, cv=4, n_jobs=2)
        ran = pool.metrics().to_dict()["completed"]
    assert list(parallel) == list(sequential)
    assert ran > 0  # the folds ran on the pool


def test_without_joblib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "joblib", None)
    monkeypatch.delitem(sys.modules, "makeparallel.integrations.joblib")
    with pytest.raises(ImportError, match=r'pip install "makeparallel\[joblib\]"'):
        importlib.import_module("makeparallel.integrations.joblib")


def test_the_pool_made_for_joblib_is_reused_and_replaced_for_another_size() -> None:
    def kept() -> list[mp.Pool]:
        return [p for p in live_pools() if p.name == "joblib-process" and p._open]

    with parallel_config(backend="makeparallel", n_jobs=2):
        Parallel()(delayed(os.getpid)() for _ in range(4))
        pools = kept()
        again = set(Parallel()(delayed(os.getpid)() for _ in range(4)))
        assert kept() == pools
        assert len(pools) == 1
        assert again <= set(worker_pids(pools[0]))
    with parallel_config(backend="makeparallel", n_jobs=3):
        Parallel()(delayed(os.getpid)() for _ in range(6))
        now = kept()
    assert len(now) == 1
    assert now[0].workers == 3
    assert not pools[0]._open  # the old size was shut down, not left running


def test_results_can_be_streamed_as_a_generator() -> None:
    with parallel_config(backend="makeparallel", n_jobs=2):
        stream = Parallel(return_as="generator_unordered")(delayed(pow)(i, 2) for i in range(10))
        assert sorted(stream) == [i * i for i in range(10)]


def native_threads() -> tuple[str | None, int]:
    import numpy as np
    from threadpoolctl import threadpool_info

    np.ones(4) @ np.ones(4)  # BLAS loaded
    limits = {info["num_threads"] for info in threadpool_info()}
    return os.environ.get("OMP_NUM_THREADS"), max(limits, default=1)


def test_workers_share_the_cpus_among_their_native_threads() -> None:
    pytest.importorskip("threadpoolctl")
    pytest.importorskip("numpy")
    with parallel_config(backend="makeparallel", n_jobs=2, inner_max_num_threads=1):
        answers = set(Parallel()(delayed(native_threads)() for _ in range(4)))
    # one thread each for OpenMP and BLAS, as loaded after the limit and before it
    assert answers == {("1", 1)}


def test_shutdown_frees_the_kept_workers() -> None:
    with parallel_config(backend="makeparallel", n_jobs=2):
        Parallel()(delayed(abs)(-i) for i in range(4))
    kept = [p for p in live_pools() if p.name == "joblib-process" and p._open]
    assert len(kept) == 1
    shutdown()
    assert not kept[0]._open
    with parallel_config(backend="makeparallel", n_jobs=2):
        assert Parallel()(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
