"""How the suite's benchmarks measure: rounds of contenders, summaries, peak memory.

A benchmark is a tuple of ``Contender`` values. ``run_rounds`` goes round
after round; in each round it sets every contender up, takes one sample and
tears the contender down again, so a slow drift of the machine hits all
contenders alike and no idle pool lingers while the next one is timed. The
first round takes the contenders in their listed order, later rounds in a
shuffled one (the same shuffles in every run), so no contender always runs
right after the same peer: whatever one leaves behind (mpire's map of tiny
items takes about a second) would otherwise always weigh on the same row. A
row keeps every sample; ``Row.summary`` gives the median, min and max.

A contender whose library is not installed is "skipped"; one whose API
cannot express the workload raises ``NotApplicable`` and is "n/a"; one that
fails is "error", with the exception in its note. None of these stops the
run. Figures that need a clean process (peak memory of the parent) are
measured in a fresh interpreter per sample (``run_child``).

This module must never hide a failure as a number: a row has samples only if
every one of its repetitions succeeded.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from machine import CpuMeter

HERE = Path(__file__).resolve().parent
REPETITIONS = {"full": 5, "quick": 2, "smoke": 1}
WARMUP_NAP = 0.05  # seconds a warm-up task keeps its worker busy
PRIMARY = "seconds"

# One sample: wall seconds, or named figures of which "seconds" is the main one.
Sample = float | dict[str, float]
Measure = Callable[[], Sample]


class NotApplicable(Exception):
    """The contender's API cannot express this workload (the row says why)."""


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    # Sets the contender up (untimed), yields the callable that takes one
    # sample, tears it down (untimed).
    session: Callable[[], contextlib.AbstractContextManager[Measure]]
    note: str = ""


@dataclass
class Row:
    key: str
    label: str
    note: str = ""
    status: str = "ok"  # ok | skipped | n/a | error
    samples: dict[str, list[float]] = field(default_factory=dict)
    foreign_cpu_s: float = 0.0  # CPU seconds other processes used while this row ran
    capacity_s: float = 0.0  # wall seconds x CPUs while this row ran

    def add(self, sample: Sample) -> None:
        figures = {PRIMARY: sample} if isinstance(sample, int | float) else sample
        for name, value in figures.items():
            self.samples.setdefault(name, []).append(float(value))

    def fail(self, status: str, note: str) -> None:
        self.status = status
        self.note = f"{self.note}; {note}" if self.note else note
        self.samples.clear()

    def summary(self, scale: float = 1.0) -> dict[str, Any]:
        """Median, min, max and samples of the main figure (times ``scale``) and of the others."""
        share = round(self.foreign_cpu_s / self.capacity_s, 3) if self.capacity_s else None
        out: dict[str, Any] = {
            "key": self.key,
            "label": self.label,
            "status": self.status,
            "note": self.note,
            "foreign_cpu_share": share,
        }
        if self.status != "ok" or PRIMARY not in self.samples:
            return out
        out.update(stats([v * scale for v in self.samples[PRIMARY]]))
        others = {k: stats(v) for k, v in self.samples.items() if k != PRIMARY}
        if others:
            out["figures"] = others
        return out


def stats(samples: list[float]) -> dict[str, Any]:
    """Median, min, max and every sample, rounded to four significant digits."""
    return {
        "median": _round(statistics.median(samples)),
        "min": _round(min(samples)),
        "max": _round(max(samples)),
        "samples": [_round(s) for s in samples],
    }


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def run_rounds(contenders: tuple[Contender, ...], repetitions: int, title: str) -> list[Row]:
    """``repetitions`` rounds; each sets up, samples and tears down every contender once."""
    rows = [Row(c.key, c.label, c.note) for c in contenders]
    pairs = list(zip(contenders, rows, strict=True))
    for number in range(1, repetitions + 1):
        print(f"{title}: round {number}/{repetitions}", file=sys.stderr)
        order = pairs[:]
        if number > 1:
            random.Random(number).shuffle(order)  # the same orders in every run
        for contender, row in order:
            if row.status == "ok":
                _sample(contender, row)
    for row in rows:
        _progress(row)
    return rows


def _sample(contender: Contender, row: Row) -> None:
    meter = CpuMeter()
    try:
        with contender.session() as measure:
            row.add(measure())
    except ImportError as exc:
        row.fail("skipped", f"not installed ({exc.name or exc})")
    except NotApplicable as exc:
        row.fail("n/a", str(exc))
    except Exception as exc:
        traceback.print_exc()
        row.fail("error", f"{type(exc).__name__}: {exc}"[:300])
    meter.add_to([row])


def _progress(row: Row) -> None:
    if row.status == "ok":
        seconds = row.samples[PRIMARY]
        text = f"median {statistics.median(seconds):.4g} s over {len(seconds)}"
    else:
        text = f"{row.status}: {row.note}"
    print(f"  {row.label}: {text}", file=sys.stderr)


def timed(run: Callable[[], Any], check: Callable[[Any], bool] | None = None) -> float:
    """Wall seconds of one ``run()``; raise if ``check`` rejects its result."""
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    if check is not None and not check(result):
        raise RuntimeError(f"wrong result: {_short(result)}")
    return elapsed


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


# -- memory ---------------------------------------------------------------------------


def _status_kib(field_name: str) -> int | None:
    """A ``/proc/self/status`` figure in KiB (VmRSS, VmHWM), or None if unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux 4.0+); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class PeakRss:
    """How far this process's resident memory rose above its level at the start, in MiB.

    Reads VmHWM, the kernel's own peak, reset at the start (Linux 4.0 and
    later allow the reset). Where the reset is not allowed, a thread samples
    VmRSS every few milliseconds instead; it may miss a spike shorter than
    that, and it takes a little CPU from the process it measures.
    """

    def __init__(self, interval: float = 0.002) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._peak_kib = 0
        self._baseline_kib = 0
        self._kernel_peak = False
        self._thread = threading.Thread(target=self._watch, name="peak-rss", daemon=True)
        self.growth_mib: float | None = None

    def __enter__(self) -> PeakRss:
        self._baseline_kib = _status_kib("VmRSS") or 0
        self._peak_kib = self._baseline_kib
        self._kernel_peak = _reset_peak()
        if not self._kernel_peak:
            self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            self._peak_kib = max(self._peak_kib, _status_kib("VmRSS") or 0)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        peak = max(self._peak_kib, _status_kib("VmRSS") or 0)
        if self._kernel_peak:
            peak = max(peak, _status_kib("VmHWM") or 0)
        self.growth_mib = max(0.0, (peak - self._baseline_kib) / 1024)


# -- fresh processes -------------------------------------------------------------------


def run_child(script: Path, *args: str, timeout: float = 600) -> dict[str, float]:
    """Run ``script --child ARGS`` in a fresh interpreter; return the JSON of its last line."""
    command = [sys.executable, str(script), "--child", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"child exited with {done.returncode}: {tail}")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError("child printed no result")
    figures: dict[str, float] = json.loads(lines[-1])
    return figures


@contextlib.contextmanager
def in_fresh_process(script: Path, *args: str) -> Iterator[Measure]:
    """A session whose every sample is one run of ``script --child ARGS``."""
    yield lambda: run_child(script, *args)


def print_child_result(figures: dict[str, float]) -> None:
    """The last line a ``--child`` run prints: its figures, as JSON."""
    print(json.dumps(figures), flush=True)


# -- pools ----------------------------------------------------------------------------


def warm_up(submit: Callable[..., Any], workers: int) -> None:
    """Start every worker of a pool: one short nap per worker, submitted together.

    Each nap keeps its worker busy for a moment, so a pool that starts workers
    on demand has to start all of them.
    """
    import workloads

    futures = [submit(workloads.nap, WARMUP_NAP) for _ in range(workers)]
    for future in futures:
        future.result()
