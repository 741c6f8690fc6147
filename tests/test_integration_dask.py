"""Dask's local scheduler and asyncio's run_in_executor take a Pool as their executor."""

from __future__ import annotations

import asyncio
import os

import pytest

import makeparallel as mp
from processes import worker_pids


def pid_of(_: object) -> int:
    return os.getpid()


def test_a_dask_bag_runs_in_the_pools_workers() -> None:
    bag = pytest.importorskip("dask.bag")
    import dask

    with mp.Pool(workers=2, start="spawn") as pool:
        pids = dask.compute(
            bag.from_sequence(range(16), npartitions=8).map(pid_of), scheduler=pool
        )[0]
        workers = set(worker_pids(pool))
    assert len(pids) == 16
    assert set(pids) <= workers
    assert os.getpid() not in pids


def test_a_dask_array_runs_in_the_pools_workers() -> None:
    da = pytest.importorskip("dask.array")
    import dask
    import numpy as np

    def block_pids(block: np.ndarray) -> np.ndarray:
        return np.full(block.shape, os.getpid())

    with mp.Pool(workers=2, start="spawn") as pool:
        ones = da.ones((8, 8), chunks=(2, 8))
        total, pids = dask.compute((ones * 2).sum(), ones.map_blocks(block_pids), scheduler=pool)
        workers = set(worker_pids(pool))
    assert total == 128
    assert set(np.unique(pids)) <= workers
    assert os.getpid() not in set(np.unique(pids))


def test_dask_reads_the_pools_size() -> None:
    with mp.Pool(workers=3, backend="thread") as pool:
        assert pool._max_workers == 3  # what dask.compute(scheduler=pool) reads


def test_run_in_executor_takes_a_pool() -> None:
    async def main(pool: mp.Pool) -> list[int]:
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(*(loop.run_in_executor(pool, pid_of, i) for i in range(4)))
        )

    with mp.Pool(workers=2, start="spawn") as pool:
        pids = asyncio.run(main(pool))
        workers = set(worker_pids(pool))
    assert set(pids) <= workers
    assert os.getpid() not in pids
