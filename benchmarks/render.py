"""A saved benchmark report as markdown tables and PNG plots, and the docs block built from them.

Everything here reads a report (``report.py``) and nothing else, so the docs
and plots can be rebuilt from a committed JSON file at any time and always
show what a run measured. matplotlib is imported only to plot, with the
non-interactive Agg backend.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

BUSY_SHARE = 0.05  # flag rows during which other processes used more CPU than this
BEGIN = "<!-- suite:begin -->"
END = "<!-- suite:end -->"
SUMMARY_BEGIN = "<!-- summary:begin -->"
SUMMARY_END = "<!-- summary:end -->"

# The README's table: one line per figure, makeparallel against its peers.
# (section, table, what it is, makeparallel's row, ProcessPoolExecutor's row,
#  multiprocessing.Pool's row, another peer's row)
HEADLINES = (
    (
        "cpu",
        "cpu",
        "CPU-bound speed-up, 8 tasks of 0.1 s (work/wall; limit 2.0x)",
        "makeparallel_pool",
        "process_pool_executor",
        "multiprocessing_pool",
        "loky",
    ),
    (
        "overhead",
        "per_task",
        "per-task overhead, 5 000 no-op submits (µs)",
        "makeparallel",
        "ppe",
        "mp_pool",
        "pebble",
    ),
    (
        "overhead",
        "round_trip",
        "round trip of one tiny task (µs)",
        "makeparallel",
        "ppe",
        "mp_pool",
        "floor_polling",
    ),
    (
        "whole_program",
        "cold_start",
        "cold start in a fresh program: new pool to first result (ms)",
        "makeparallel",
        "ppe_fork",
        None,
        "ppe_forkserver",
    ),
    (
        "tiny_items",
        "map",
        "map over 200 000 tiny items (ms)",
        "makeparallel_map",
        "ppe",
        "mp_pool",
        "joblib",
    ),
    (
        "tiny_items",
        "map",
        "the same map, run a second time on the pool (ms)",
        "makeparallel_map_again",
        None,
        None,
        None,
    ),
    (
        "streaming",
        "imap",
        "lazy map over a generator of 1 million items (s)",
        "makeparallel_peer_size",
        "ppe",
        "mp_pool",
        None,
    ),
    (
        "streaming",
        "imap",
        "lazy map over a generator of 10 million items (s)",
        "makeparallel",
        None,
        None,
        None,
    ),
    (
        "data_transfer",
        "bytes",
        "one 100 MB `bytes` argument (ms)",
        "makeparallel",
        "ppe",
        "mp_pool",
        "loky",
    ),
    (
        "data_transfer",
        "numpy",
        "one 100 MB NumPy argument (ms)",
        "makeparallel",
        "ppe",
        "mp_pool",
        "loky",
    ),
    (
        "real_workload",
        "compile_stdlib",
        "compile every stdlib module (s)",
        "makeparallel_map",
        "ppe",
        "mp_pool",
        "joblib",
    ),
    (
        "whole_program",
        "compile_stdlib",
        "whole program compiling every stdlib module, start to exit (s)",
        "makeparallel",
        "ppe_fork",
        "mp_pool",
        "joblib",
    ),
    (
        "whole_program",
        "short_script",
        "short script: 16 items of 20 ms, its module imports NumPy; start to exit (s)",
        "makeparallel",
        "ppe_fork",
        "mp_pool",
        "joblib",
    ),
    (
        "whole_program",
        "first_batch",
        "first batch of 4 tasks of 70 ms after one warm task, its module imports pytest "
        "(speed-up over serial)",
        "makeparallel",
        "ppe_fork",
        None,
        "makeparallel_fork",
    ),
    (
        "whole_program",
        "parent_import",
        "`python -c` importing the pool, start to exit (ms)",
        "makeparallel",
        "ppe",
        "mp_pool",
        "floor",
    ),
    (
        "io_bound",
        "sleeps",
        "200 sleeps of 10 ms on 32 threads (ms)",
        "makeparallel",
        None,
        None,
        "thread_pool_executor",
    ),
)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.1:
        return f"{value:.3f}"
    return f"{value:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(out: dict[str, Any]) -> str:
    """One table: a row per contender, the median with min and max, then the extra figures."""
    figures: dict[str, str] = out.get("figures", {})
    ratio = out.get("ratio_label")
    unit = out["unit"]
    header = [
        "Contender",
        f"Median ({unit})",
        "Min",
        "Max",
        *([ratio] if ratio else []),
        *(f"{label}: median (min-max)" for label in figures.values()),
        "Notes",
    ]
    align = ["---", "---:", "---:", "---:", *(["---:"] if ratio else []), *["---:"] * len(figures)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([*align, "---"]) + "|"]
    for row in out["rows"]:
        notes = [row["note"]] if row.get("note") else []
        share = row.get("foreign_cpu_share")
        if share is not None and share > BUSY_SHARE:
            notes.append(f"busy machine: {share:.0%} of the CPU time went to other processes")
        if row["status"] == "ok":
            cells = [_number(row["median"]), _number(row["min"]), _number(row["max"])]
            if ratio:
                value = row.get("ratio")
                cells.append("-" if value is None else f"{value:.2f}x")
            for name in figures:
                figure = row.get("figures", {}).get(name)
                cells.append(
                    "-"
                    if figure is None
                    else f"{_number(figure['median'])} "
                    f"({_number(figure['min'])}-{_number(figure['max'])})"
                )
        else:
            cells = [row["status"], "-", "-", *(["-"] if ratio else []), *["-"] * len(figures)]
        cells = [_cell(row["label"]), *cells, _cell("; ".join(notes))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items() if v)
    busy = m.get("foreign_cpu_share_during_run")
    busy_text = "" if busy is None else f"; other processes used {busy:.0%} of the CPU time"
    changed = " with local changes to src/" if m.get("src_modified") else ""
    bytecode = {
        True: ", its bytecode compiled before the run",
        False: ", its bytecode not compiled",
    }.get(m.get("bytecode_compiled"), "")
    return (
        f"{m.get('cpu_model')}, {m.get('physical_cores')} cores, {m.get('usable_cpus')} usable "
        f"CPUs, {m.get('memory_gib')} GiB RAM, {m.get('os')}, {m.get('python')}, default start "
        f"method {m.get('start_method')}{busy_text}. Packages: {packages}. makeparallel at commit "
        f"`{m.get('git_commit')}`{changed}{bytecode}"
    )


def markdown(report: dict[str, Any], images: str | None = "img") -> str:
    """Every section of a report as markdown; plots linked under ``images`` (None: no links)."""
    parts = [
        f"Run of {report['created']} (`{report['command']}`, mode {report['mode']}, "
        f"{report.get('duration_s', '?')} s).",
        "",
        f"Machine: {_machine_line(report)}.",
    ]
    for name, section in report["benchmarks"].items():
        parts += ["", f"### {section.get('title', name)}", ""]
        if "error" in section:
            parts.append(f"The benchmark failed: {section['error']}")
            continue
        if "tables" not in section:  # the CPU comparison of run.py has its own format
            import run

            parts += [section.get("description", ""), "", run.markdown_table(section)]
            if images is not None:
                title = _cpu_as_table(section)["title"]
                parts += ["", f"![{title}]({images}/{_image_name(name, 'cpu')})"]
            continue
        if section.get("description"):
            parts += [section["description"][0].upper() + section["description"][1:] + ".", ""]
        for out in section["tables"]:
            parts += [f"**{out['title']}**: {out['what']}", "", table_markdown(out)]
            if images is not None:
                for plotted in filter(_plottable, _with_figures(out)):
                    image = f"{images}/{_image_name(name, plotted['key'])}"
                    parts += ["", f"![{plotted['title']}]({image})"]
            parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def summary(report: dict[str, Any]) -> str:
    """The README's comparison: per figure, makeparallel's median next to its peers'."""
    lines = [
        "| figure | makeparallel | ProcessPoolExecutor | multiprocessing.Pool "
        "| another peer | serial loop |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for section, key, title, ours, ppe, mp_pool, other in HEADLINES:
        out = _find_table(report, section, key)
        if out is None:
            continue
        rows = {row.get("key"): row for row in out["rows"]}
        cells = [_median(rows.get(k)) for k in (ours, ppe, mp_pool)]
        peer = rows.get(other)
        cells.append("-" if peer is None else f"{_cell(peer['label'])}: {_median(peer)}")
        cells.append(_median(rows.get("serial")))
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _find_table(report: dict[str, Any], section: str, key: str) -> dict[str, Any] | None:
    found = report["benchmarks"].get(section)
    if found is None or "error" in found:
        return None
    tables = found["tables"] if "tables" in found else [_cpu_as_table(found)]
    return next((t for t in tables if t["key"] == key), None)


def _median(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if row["status"] != "ok":
        return row["status"]
    text = f"{_number(row['median'])} ({_number(row['min'])}-{_number(row['max'])})"
    memory = row.get("figures", {}).get("rss_mib")
    if memory is not None:
        text += f", +{_number(memory['median'])} MiB"
    return text


def write_summary(report: dict[str, Any], doc: Path) -> None:
    """Fill the summary block of ``doc`` (the README) from ``report``."""
    text = doc.read_text()
    pattern = re.compile(re.escape(SUMMARY_BEGIN) + ".*?" + re.escape(SUMMARY_END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{doc.name} has no {SUMMARY_BEGIN} ... {SUMMARY_END} block to fill")
    block = (
        f"{SUMMARY_BEGIN}\n<!-- generated by `python benchmarks/suite.py --write-docs`: "
        f"do not edit -->\n\n{summary(report)}\n{_machine_line(report)}.\n{SUMMARY_END}"
    )
    doc.write_text(pattern.sub(lambda _: block, text, count=1))


def _image_name(section: str, key: str) -> str:
    return f"bench-{section}-{key}.png".replace("_", "-")


def _plottable(out: dict[str, Any]) -> bool:
    return any(row["status"] == "ok" for row in out["rows"])


def plot(report: dict[str, Any], directory: Path) -> list[Path]:
    """One PNG per table (a bar per contender: median, with min and max as whiskers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, section in report["benchmarks"].items():
        if "error" in section:
            continue
        tables = section["tables"] if "tables" in section else [_cpu_as_table(section)]
        for out in [derived for table in tables for derived in _with_figures(table)]:
            if not _plottable(out):
                continue
            path = directory / _image_name(name, out["key"])
            figure = _lines(plt, out) if out.get("plot") == "lines" else _bars(plt, out)
            figure.savefig(path, dpi=100)
            plt.close(figure)
            written.append(path)
    return written


def _with_figures(out: dict[str, Any]) -> list[dict[str, Any]]:
    """A table, and one more per extra figure (e.g. peak memory) with that figure as its bars."""
    tables = [out]
    for figure, label in out.get("figures", {}).items():
        rows = []
        for row in out["rows"]:
            values = row.get("figures", {}).get(figure)
            rows.append({"label": row["label"], "status": row["status"], **(values or {})})
            if values is None:
                rows[-1]["status"] = "n/a"
        key, title = f"{out['key']}_{figure}", f"{out['title']}: {label}"
        tables.append({"key": key, "title": title, "unit": label, "rows": rows})
    return tables


def _bars(plt: Any, out: dict[str, Any]) -> Any:
    rows = [r for r in out["rows"] if r["status"] == "ok"]
    labels = [r["label"] for r in rows][::-1]
    medians = [r["median"] for r in rows][::-1]
    below = [r["median"] - r["min"] for r in rows][::-1]
    above = [r["max"] - r["median"] for r in rows][::-1]
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.3))
    axes.barh(labels, medians, xerr=[below, above], color="#4C72B0", capsize=3)
    for bar, label in zip(axes.patches, labels, strict=True):
        if label.startswith("makeparallel"):
            bar.set_color("#DD8452")
    if min(medians) > 0 and max(medians) / min(medians) > 50:
        axes.set_xscale("log")
    axes.set_xlabel(f"{out['unit']} (median; whiskers: min and max)")
    axes.set_title(out["title"])
    figure.tight_layout()
    return figure


def _lines(plt: Any, out: dict[str, Any]) -> Any:
    figure, axes = plt.subplots(figsize=(6, 4))
    series: dict[str, list[tuple[float, float]]] = {}
    for row in out["rows"]:
        if row["status"] == "ok" and "series" in row and row.get("ratio") is not None:
            series.setdefault(row["series"], []).append((row["x"], row["ratio"]))
    for label, points in series.items():
        points.sort()
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=label)
    cores = out.get("cores")
    xs = sorted({x for points in series.values() for x, _ in points})
    if cores and xs:
        ideal = [min(x, cores) for x in xs]
        axes.plot(xs, ideal, linestyle="--", color="grey", label=f"limit ({cores} cores)")
    axes.set_xticks(xs)
    axes.set_xlabel(out.get("x_label", ""))
    axes.set_ylabel(out.get("ratio_label", ""))
    axes.set_title(out["title"])
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _cpu_as_table(cpu: dict[str, Any]) -> dict[str, Any]:
    """The work/wall speed-ups of run.py's CPU comparison, in the shape of a suite table."""
    rows = []
    for r in cpu["results"]:
        row = {"key": r["key"], "label": f"{r['label']} [{r['mode']}]", "status": r["status"]}
        if r["status"] == "ok" and r.get("work_speedup") is not None:
            row.update(
                median=r["work_speedup"], min=r["work_speedup_min"], max=r["work_speedup_max"]
            )
        else:
            row["status"] = "n/a"
        rows.append(row)
    return {
        "key": "cpu",
        "title": f"CPU-bound speed-up ({cpu.get('workers')} workers)",
        "unit": "speed-up, work/wall",
        "rows": rows,
    }


def write_docs(report: dict[str, Any], doc: Path, images: Path) -> list[Path]:
    """Fill the generated block of ``doc`` from ``report``; write its plots into ``images``."""
    text = doc.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{doc.name} has no {BEGIN} ... {END} block to fill")
    link = os.path.relpath(images, doc.parent)
    block = (
        f"{BEGIN}\n<!-- generated by `python benchmarks/suite.py --write-docs`: do not edit -->\n\n"
        f"{markdown(report, images=link)}\n{END}"
    )
    doc.write_text(pattern.sub(lambda _: block, text, count=1))
    return plot(report, images)
