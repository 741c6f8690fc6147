"""Maps of items cheaper than their trip to a worker run the rest in the caller.

With automatic chunks, the first chunks are small and measure the items in
a worker. When an item runs in less than a few times what pickling it
costs, shipping cannot pay off and the rest of the map runs in the calling
thread. These tests check what a user would notice: where items ran, that
results and errors are the same either way, and the cases that never run
inline (an explicit chunksize, a per-item timeout, an initializer, slow items).
"""

from __future__ import annotations

import os

import pytest

import makeparallel as mp
from processes import worker_pids

ITEMS = 20_000
# items that cost far more to pickle than pid_of costs to run
RECORDS = [{"id": i, "name": f"record {i}", "tags": ["a", "b", "c"]} for i in range(ITEMS)]


def pid_of(_: object) -> int:
    return os.getpid()


def pid_of_slow(x: int) -> int:
    total = 0
    for i in range(2_000):
        total += i * x % 7
    return os.getpid() + total * 0


def fail_on_multiples_of_1000(record: dict[str, int]) -> int:
    x = record["id"]
    if x % 1000 == 999:
        raise ValueError(f"bad item {x}")
    return x + 1


def setup_nothing() -> None:
    pass


@pytest.fixture
def pool():
    with mp.Pool(workers=2, backend="process", name="inline") as p:
        yield p


def on(pool: mp.Pool, fn):
    return mp.parallel(pool=pool)(fn)


def test_tiny_items_run_in_the_caller_after_a_measured_start(pool: mp.Pool) -> None:
    pids = mp.parallel_map(on(pool, pid_of), RECORDS)
    here = pids.count(os.getpid())
    assert len(pids) == ITEMS
    assert here > ITEMS * 0.9  # the rest of the map ran here ...
    assert here < ITEMS  # ... after the first items were measured in workers
    assert set(pids) - {os.getpid()} <= set(worker_pids(pool))


def test_an_explicit_chunksize_always_uses_the_workers(pool: mp.Pool) -> None:
    pids = mp.parallel_map(on(pool, pid_of), RECORDS, chunksize=500)
    assert os.getpid() not in pids


def test_slow_items_always_use_the_workers(pool: mp.Pool) -> None:
    pids = mp.parallel_map(on(pool, pid_of_slow), range(2_000))
    assert os.getpid() not in pids


def test_a_per_item_timeout_always_uses_the_workers(pool: mp.Pool) -> None:
    pids = mp.parallel_map(on(pool, pid_of), RECORDS, timeout=30)
    assert os.getpid() not in pids


def test_a_pool_with_an_initializer_always_uses_the_workers() -> None:
    with mp.Pool(workers=2, backend="process", initializer=setup_nothing) as pool:
        pids = mp.parallel_map(on(pool, pid_of), RECORDS)
    assert os.getpid() not in pids


@pytest.mark.parametrize("ordered", [True, False])
def test_results_and_errors_are_the_same_inline(pool: mp.Pool, ordered: bool) -> None:
    fn = on(pool, fail_on_multiples_of_1000)
    expected = [x + 1 for x in range(ITEMS) if x % 1000 != 999]
    skipped = mp.parallel_map(fn, RECORDS, on_error="skip", ordered=ordered)
    assert (skipped if ordered else sorted(skipped)) == expected

    returned = mp.parallel_map(fn, RECORDS, on_error="return")
    failures = [(i, r) for i, r in enumerate(returned) if isinstance(r, ValueError)]
    assert [i for i, _ in failures] == [x for x in range(ITEMS) if x % 1000 == 999]
    # an item that failed in the caller says so, like one that failed in a worker says where
    last = failures[-1][1]
    assert str(last) == f"bad item {ITEMS - 1}"
    assert any("inline" in note for note in last.__notes__)

    with pytest.raises(ValueError, match=r"^bad item 999\b"):
        mp.parallel_map(fn, RECORDS)


def test_imap_over_a_generator_of_tiny_items(pool: mp.Pool) -> None:
    results = list(pool.imap(pid_of, (record for record in RECORDS)))
    assert results.count(os.getpid()) > ITEMS * 0.9
