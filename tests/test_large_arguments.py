"""Large arguments and results travel out of band: intact, and without a pickled copy.

NumPy arrays, ``bytearray`` and large ``bytes`` arguments are written to the
worker's socket straight from their own memory (pickle protocol 5 buffers);
large results come back the same way.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import makeparallel as mp
from programs import run_python

MIB = 2**20


def describe(value: object) -> tuple[str, int, bytes]:
    data = bytes(value)  # type: ignore[call-overload]
    return type(value).__name__, len(data), data[:4] + data[-4:]


def double(array):  # type: ignore[no-untyped-def]
    return array * 2


@pytest.fixture(scope="module")
def pool():
    with mp.Pool(workers=2, backend="process", name="large") as p:
        yield p


@pytest.mark.parametrize("kind", [bytes, bytearray])
def test_a_large_binary_argument_arrives_whole_and_of_its_type(pool: mp.Pool, kind: type) -> None:
    value = kind(range(256)) * (3 * MIB // 256) + kind(b"tail")
    assert pool.submit(describe, value).result(timeout=30) == describe(value)
    # as a keyword argument too
    assert pool.submit(describe, value=value).result(timeout=30) == describe(value)


def test_small_and_nested_bytes_still_work(pool: mp.Pool) -> None:
    nested = {"blob": b"x" * MIB, "small": b"ab"}
    assert pool.submit(len, nested["blob"][:10]).result(timeout=30) == 10
    assert pool.submit(sorted, nested).result(timeout=30) == ["blob", "small"]


def test_numpy_arrays_go_and_come_back(pool: mp.Pool) -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(4 * MIB // 8, dtype=np.float64)
    result = pool.submit(double, array).result(timeout=30)
    assert isinstance(result, np.ndarray)
    assert result.dtype == array.dtype
    assert np.array_equal(result, array * 2)
    result[0] = -1.0  # a result is an ordinary, writable array


def test_sending_a_large_argument_makes_no_copy_in_the_parent(tmp_path: Path) -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc to reset the peak resident size")
    script = textwrap.dedent(
        """
        import makeparallel as mp

        def status(field):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) // 1024

        data = bytes(200 * 2**20)
        with mp.Pool(1, backend="process") as pool:
            pool.submit(len, b"").result()
            before = status("VmRSS")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM, the kernel's peak
            assert pool.submit(len, data).result() == len(data)
            print(status("VmHWM") - before)
        """
    )
    done = run_python("-c", script, timeout=120)
    growth_mib = int(done.stdout.split()[-1])
    assert growth_mib < 50, f"the parent grew by {growth_mib} MiB sending 200 MiB"
