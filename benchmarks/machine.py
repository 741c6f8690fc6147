"""What the benchmarks record about the machine they ran on, and how busy it was.

Shared by every benchmark script: the CPU model and core counts, memory, OS,
Python, the peers' versions and the makeparallel sources being measured
(``describe_machine``); how idle the CPUs are (``wait_for_idle``); and how
much CPU time other processes took while a benchmark ran (``CpuMeter``), so a
figure taken on a busy machine says so. Paths of this machine never go into
a result: package paths are recorded relative to the checkout.
"""

import compileall
import contextlib
import hashlib
import importlib.util
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
PEERS = ("makeparallel", "cloudpickle", "joblib", "loky", "pebble", "mpire")


class Metered(Protocol):
    """A result that adds up the CPU time other processes used while it was measured."""

    foreign_cpu_s: float
    capacity_s: float


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall clock, CPU seconds busy on the whole machine, CPU seconds of this process tree)."""
    try:
        first_line = Path("/proc/stat").read_text().split("\n", 1)[0]
        ticks = [int(x) for x in first_line.split()[1:9]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    own = _live_descendants_cpu_seconds()
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    return time.perf_counter(), busy, own


def _live_descendants_cpu_seconds() -> float:
    """CPU seconds of this process's descendants that have not been reaped yet.

    Ended (reaped) children are counted by ``RUSAGE_CHILDREN`` instead; a
    descendant's own reaped children are in its cutime/cstime.
    """
    parent_of: dict[int, int] = {}
    ticks_of: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # it just ended
        fields = text.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
        parent_of[int(entry.name)] = int(fields[1])
        ticks_of[int(entry.name)] = sum(int(f) for f in fields[11:15])  # u, s, cu, cs time
    me, total = os.getpid(), 0
    for pid, ticks in ticks_of.items():
        ancestor, hops = parent_of.get(pid), 0
        while ancestor not in (None, 0, 1, me) and hops < 64:
            ancestor, hops = parent_of.get(ancestor), hops + 1
        if ancestor == me:
            total += ticks
    return total / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """How much of the machine other processes used while we ran.

    Compares the machine's busy CPU time (/proc/stat, steal included) with the
    CPU time of this process and all its descendants. A share near 0 means
    the figures were taken on an otherwise idle machine.
    """

    def __init__(self) -> None:
        self._start = cpu_snapshot()

    def since_start(self) -> tuple[float, float] | None:
        """(CPU seconds other processes used, wall seconds x CPUs) since the start."""
        end = cpu_snapshot()
        if self._start is None or end is None:
            return None
        foreign = max(0.0, (end[1] - self._start[1]) - (end[2] - self._start[2]))
        return foreign, (end[0] - self._start[0]) * (os.cpu_count() or 1)

    def share(self) -> float | None:
        """The share of the machine's CPU time other processes used since the start."""
        used = self.since_start()
        return round(used[0] / used[1], 3) if used and used[1] else None

    def add_to(self, rows: Iterable[Metered]) -> None:
        """Add the foreign CPU time and the capacity since the start to each of ``rows``."""
        used = self.since_start()
        if used is None:
            return
        for row in rows:
            row.foreign_cpu_s += used[0]
            row.capacity_s += used[1]


def _cpuinfo() -> tuple[str, int | None]:
    """The CPU model and the number of physical cores, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", None
    model: str | None = None
    cores: set[tuple[str, str]] = set()
    physical = ""
    for line in text.splitlines():
        name, _, value = (part.strip() for part in line.partition(":"))
        if name == "model name" and model is None:
            model = value
        elif name == "physical id":
            physical = value
        elif name == "core id":
            cores.add((physical, value))
    return model or platform.processor() or "unknown", len(cores) or None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_idle_fraction(seconds: float = 1.0) -> float | None:
    """The share of all CPUs left idle over ``seconds``, from /proc/stat (None if unknown)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (idle1 - idle0) / (total1 - total0) if total1 > total0 else None


def wait_for_idle(timeout: float) -> float | None:
    """Wait up to ``timeout`` s for the CPUs to be 95% idle; return the last idle share seen."""
    deadline = time.monotonic() + timeout
    while True:
        idle = cpu_idle_fraction()
        if idle is None or idle >= 0.95 or time.monotonic() >= deadline:
            return idle
        print(f"waiting for an idle machine ({idle:.0%} idle) ...", file=sys.stderr)
        time.sleep(4.0)


def _package_dir(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(next(iter(spec.submodule_search_locations)))


def _relative_to_repo(path: str | None) -> str | None:
    """A path inside this checkout as seen from its root (no machine paths in results)."""
    if path is None:
        return None
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return "(installed outside this checkout)"


def compile_bytecode() -> bool:
    """Write current ``.pyc`` files for makeparallel and for these scripts.

    An installed package has them (pip compiles at install time), and so do
    the peers. An editable install run with ``PYTHONDONTWRITEBYTECODE`` set
    has none, or stale ones: then every fresh worker would compile the
    modules it imports, and a cold start would time the compiler.
    """
    folders = [HERE]
    found = _package_dir("makeparallel")
    if found is not None:
        folders.append(Path(found))
    return all(compileall.compile_dir(folder, quiet=1) for folder in folders)


def makeparallel_fingerprint() -> str | None:
    """A hash of the makeparallel sources being benchmarked (to see if they changed meanwhile)."""
    found = _package_dir("makeparallel")
    if found is None:
        return None
    root = Path(found)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=HERE, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def describe_machine(peers: tuple[str, ...] = PEERS) -> dict[str, Any]:
    model, physical_cores = _cpuinfo()
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024**2, 1)
    packages: dict[str, str | None] = {}
    for name in peers:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--", ":(top)src")
    return {
        "cpu_model": model,
        "physical_cores": physical_cores,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_gib": memory,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "start_method": multiprocessing.get_start_method(),
        "packages": packages,
        "git_commit": commit,
        "src_modified": bool(dirty) if dirty is not None else None,
        "makeparallel_path": _relative_to_repo(_package_dir("makeparallel")),
        "makeparallel_source_sha256": makeparallel_fingerprint(),
    }
