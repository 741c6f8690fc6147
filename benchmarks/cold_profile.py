"""Where a cold start goes: forks, copy-on-write page faults, threads, processes.

    python benchmarks/cold_profile.py [--rounds 15] [--out cold_profile.json]

For each pool, from creating a 2-worker pool to its first result (the cold
start of ``overhead.py``), the medians of:

* ms: the wall time;
* forks: ``os.fork()`` calls this process made (a pool of fresh interpreters
  makes none: ``subprocess`` starts its workers, with ``vfork``, not ``os.fork``);
* processes: this process's descendants alive at the first result;
* threads: threads this process gained;
* cpu ms: CPU time of this process, all its threads;
* faults: minor page faults this process took. After a fork, the first write
  to each page that parent and child share copies that page;
* pool faults, pool cpu ms: minor page faults its descendants took, and
  the CPU time they used, from their start.

Two figures of this machine, measured in this process after the rounds
(medians), price them: one ``os.fork()`` of it (the parent's side; the
child exits at once), and one copy-on-write fault (a write to a page a
child still shares). ``fork+fault ms`` is this process's forks and faults
at those prices: the part of its ``cpu ms`` that is the kernel copying
page tables and pages, which no pool that forks can skip. It is an upper
bound: a write to a page that no living child shares any more still
faults, at about a third of the price.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead
import peers
import workloads
from machine import compile_bytecode
from makeparallel._worker.process_tree import children
from measure import Contender, Measure, Row, run_rounds

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PROFILED = ("ppe_fork", "makeparallel_fork", "makeparallel_spawn")
FIGURES = (
    ("seconds", "ms", 1000.0),
    ("forks", "forks", 1.0),
    ("processes", "processes", 1.0),
    ("threads", "threads", 1.0),
    ("cpu", "cpu ms", 1000.0),
    ("faults", "faults", 1.0),
    ("pool_faults", "pool faults", 1.0),
    ("pool_cpu", "pool cpu ms", 1000.0),
)

_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for child in children(pid):  # as the pool finds the processes a task started
        found += [child, *_descendants(child)]
    return found


def _faults_of(pid: int) -> int:
    """Minor faults of process ``pid`` so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[7])  # minflt: the 10th field, the 8th after the name


def _cpu_of(pid: int) -> float:
    """CPU seconds process ``pid`` has used so far, all its threads (0 if it is gone)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])  # nanoseconds on a CPU
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


@contextlib.contextmanager
def profiled_cold_start(peer: peers.Peer) -> Iterator[Measure]:
    def measure() -> dict[str, float]:
        forks, faults, threads = _forks, _minor_faults(), _threads()
        cpu, started = time.process_time(), time.perf_counter()
        pool = peer.start(overhead.COLD_WORKERS)
        try:
            if pool.submit(workloads.echo, 7).result() != 7:
                raise RuntimeError("wrong result")
            seconds = time.perf_counter() - started
            figures = {
                "cpu": time.process_time() - cpu,
                "faults": _minor_faults() - faults,
                "forks": _forks - forks,
                "threads": _threads() - threads,
            }
            family = _descendants(os.getpid())
            figures["processes"] = len(family)
            figures["pool_faults"] = sum(map(_faults_of, family))
            figures["pool_cpu"] = sum(map(_cpu_of, family))
            return {"seconds": seconds, **figures}
        finally:
            pool.close()

    yield measure


def fork_cost(repeats: int) -> float:
    """Median seconds this process spends in one ``os.fork()``; the child exits at once."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        samples.append(time.perf_counter() - started)
        os.waitpid(pid, 0)
    return statistics.median(samples)


def fault_cost(pages: int = 2000) -> float:
    """Seconds per copy-on-write fault: writes to pages a forked child still shares."""
    memory = bytearray(pages * PAGE)
    memory[::PAGE] = b"\1" * pages  # every page is this process's own now
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(ready_r, 1)
        os._exit(0)
    try:
        faults = _minor_faults()
        started = time.perf_counter()
        for offset in range(0, len(memory), PAGE):
            memory[offset] = 2
        seconds = time.perf_counter() - started
        faults = _minor_faults() - faults
    finally:
        os.write(ready_w, b"x")
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)
    return seconds / max(faults, 1)


def run(rounds: int) -> dict[str, object]:
    os.register_at_fork(before=_count_fork)
    compile_bytecode()
    contenders = tuple(
        Contender(p.key, p.label, partial(profiled_cold_start, p), p.note)
        for p in overhead.COLD
        if p.key in PROFILED
    )
    rows = run_rounds(contenders, rounds, "cold-start profile")
    fork_s = fork_cost(max(rounds, 3))
    fault_s = statistics.median(fault_cost() for _ in range(max(rounds, 3)))
    return {
        "python": platform.python_version(),
        "rounds": rounds,
        "fork_ms": fork_s * 1000,
        "fault_us": fault_s * 1e6,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": [_summary(row, fork_s, fault_s) for row in rows],
    }


def _summary(row: Row, fork_s: float, fault_s: float) -> dict[str, object]:
    out: dict[str, object] = {"key": row.key, "label": row.label, "status": row.status}
    if row.status != "ok":
        out["note"] = row.note
        return out
    medians = {name: statistics.median(row.samples[name]) for name, _, _ in FIGURES}
    out.update(medians)
    out["min_seconds"] = min(row.samples["seconds"])
    out["max_seconds"] = max(row.samples["seconds"])
    out["fork_fault"] = medians["forks"] * fork_s + medians["faults"] * fault_s
    return out


def render(result: dict[str, object]) -> str:
    head = [label for _, label, _ in FIGURES] + ["fork+fault ms"]
    lines = [
        f"CPython {result['python']}, {result['rounds']} rounds, medians; this process: "
        f"one fork {result['fork_ms']:.2f} ms, one copy-on-write fault "
        f"{result['fault_us']:.2f} µs, peak RSS {result['rss_mib']:.0f} MiB",
        "",
        "| pool | " + " | ".join(head) + " |",
        "|---" * (len(head) + 1) + "|",
    ]
    for row in result["rows"]:  # type: ignore[attr-defined]
        if row["status"] != "ok":
            lines.append(f"| {row['label']} | {row['status']}: {row.get('note', '')} |")
            continue
        cells = [f"{row[name] * scale:.3g}" for name, _, scale in FIGURES]
        cells.append(f"{row['fork_fault'] * 1000:.2f}")
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("cold_profile.py reads /proc: Linux only")
    result = run(args.rounds)
    print(render(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
