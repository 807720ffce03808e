"""Turn per-round worker results into medians, same-round ratios, target checks and markdown."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.workloads import DESCRIPTIONS

# Results: results[workload][impl] is a list with one entry per round: the
# worker's JSON (with "figures"), or None where that run failed or skipped.
Results = dict[str, dict[str, list]]

MODEL_FIGURES = {
    "init": "eager init",
    "trace": "trace train step",
    "lower": "lower",
    "compile": "compile",
    "step": "jitted step",
    "apply": "un-jitted apply",
}
SERIAL_FIGURES = {
    "to_bytes_MBps": "to_bytes MB/s, warm (higher is better)",
    "from_bytes_MBps": "from_bytes MB/s, warm (higher is better)",
    "to_bytes_cold_MBps": "to_bytes MB/s, first-touch memory (higher is better)",
    "from_bytes_cold_MBps": "from_bytes MB/s, first-touch memory (higher is better)",
    "to_bytes_peak_x": "to_bytes extra peak RSS, x tree size",
    "from_bytes_peak_x": "from_bytes extra peak RSS, x tree size",
}
SERIAL_NOTE = (
    "MB = 2**20 bytes. 'raw' is the copy floor: every leaf copied once into one buffer and\n"
    "once out of it. 'warm' calls reuse memory already resident in the process (glibc told to\n"
    "keep freed memory, 4x the tree pre-touched); 'first-touch' calls use the default allocator,\n"
    "which returns big buffers to the kernel, so each call pays page faults for what it\n"
    "allocates (~2-4 s/GB on these VMs); they also give the peak: VmHWM minus VmRSS before\n"
    "the call, after malloc_trim and a reset of the high-water mark (/proc/self/clear_refs)."
)
RATIOS = (("minilinen", "flax"), ("minilinen", "raw"), ("flax", "raw"))


def _values(runs: list, figure: str) -> list:
    """One value per round (None where the run or the figure is missing)."""
    return [r["figures"].get(figure) if r and "figures" in r else None for r in runs]


def _ratios(a: list, b: list) -> list[float]:
    """a/b for the rounds where both exist: ratios are only ever taken within one round."""
    return [x / y for x, y in zip(a, b) if x is not None and y]


def spread(xs: list) -> tuple[float, float, float] | None:
    """(median, min, max) of the present values, or None when there are none."""
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), min(xs), max(xs)) if xs else None


def _fmt_seconds(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-6:.3g} us"


def _fmt(v: float, figure: str) -> str:
    if figure.endswith("MBps"):
        return f"{v:.0f}"
    if figure.endswith("_x"):
        return f"{v:.2f}"
    return _fmt_seconds(v)


def _cell(stats: tuple | None, fmt) -> str:
    if stats is None:
        return "n/a"
    med, lo, hi = stats
    return f"{fmt(med)} ({fmt(lo)}-{fmt(hi)})"


def _ratio_fmt(x: float) -> str:
    return f"{x:.2f}x"


def workload_table(workload: str, runs: dict[str, list], impls: list[str]) -> list[str]:
    """Markdown lines for one workload: a row per figure, a column per impl and per ratio."""
    figures = SERIAL_FIGURES if workload == "serialization" else MODEL_FIGURES
    ratios = [(a, b) for a, b in RATIOS if a in impls and b in impls]
    head = ["figure", *impls, *(f"{a}/{b}" for a, b in ratios)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for fig, label in figures.items():
        vals = {i: _values(runs.get(i, []), fig) for i in impls}
        if all(spread(v) is None for v in vals.values()):
            continue
        cells = [_cell(spread(vals[i]), lambda v, f=fig: _fmt(v, f)) for i in impls]
        cells += [_cell(spread(_ratios(vals[a], vals[b])), _ratio_fmt) for a, b in ratios]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines


def notes(runs: dict[str, list]) -> list[str]:
    """Why some runs have no numbers (skipped or failed), one line per distinct reason."""
    seen = []
    for impl, rs in runs.items():
        for r in rs:
            if r is None:
                continue
            for kind in ("skipped", "error"):
                if kind in r:
                    line = f"- {impl}: {kind}: {r[kind]}"
                    if line not in seen:
                        seen.append(line)
    return seen


def _ratio_stats(results: Results, workload: str, fig: str, a: str, b: str) -> tuple | None:
    runs = results.get(workload, {})
    return spread(_ratios(_values(runs.get(a, []), fig), _values(runs.get(b, []), fig)))


def _scan_stats(results: Results, impl: str, workload: str) -> tuple | None:
    """(trace + lower + compile) of `workload` over that of blocks4, within each round."""

    def total(w: str) -> list:
        runs = results.get(w, {}).get(impl, [])
        parts = [_values(runs, f) for f in ("trace", "lower", "compile")]
        return [None if None in p else sum(p) for p in zip(*parts)]

    return spread(_ratios(total(workload), total("blocks4")))


def target_lines(results: Results) -> list[str]:
    """Issue 7's targets against the measured same-round ratios (median, min-max)."""
    rows = []

    def add(label: str, stats: tuple | None, limit: float, at_least: bool = False) -> None:
        if stats is None:
            rows.append(f"| {label} | {'>=' if at_least else '<='} {limit}x | n/a | - |")
            return
        ok = stats[0] >= limit if at_least else stats[0] <= limit
        sign = ">=" if at_least else "<="
        rows.append(
            f"| {label} | {sign} {limit}x | {_cell(stats, _ratio_fmt)} | {'yes' if ok else 'NO'} |"
        )

    for w in ("seed_mlp", "cnn_bn", "mlp48", "transformer", "blocks4", "blocks64", "blocks64_scan"):
        if w in results:
            add(
                f"{w}: jitted step, minilinen/raw",
                _ratio_stats(results, w, "step", "minilinen", "raw"),
                1.03,
            )
    for fig, name in (("init", "eager init"), ("trace", "tracing")):
        for w in ("seed_mlp", "cnn_bn", "mlp48", "transformer"):
            if w in results:
                add(
                    f"{w}: {name}, minilinen/raw",
                    _ratio_stats(results, w, fig, "minilinen", "raw"),
                    1.25,
                )
    for w in ("seed_mlp", "mlp48"):
        if w in results:
            add(
                f"{w}: un-jitted apply, minilinen/raw",
                _ratio_stats(results, w, "apply", "minilinen", "raw"),
                3,
            )
    if "serialization" in results:
        for fig in ("to_bytes_MBps", "from_bytes_MBps"):
            stats = _ratio_stats(results, "serialization", fig, "minilinen", "flax")
            add(
                f"{fig.split('_MBps')[0]} throughput (warm), minilinen/flax",
                stats,
                2,
                at_least=True,
            )
        for fig in ("to_bytes_peak_x", "from_bytes_peak_x"):
            runs = results["serialization"].get("minilinen", [])
            add(
                f"{fig.split('_peak')[0]} extra peak RSS / tree size",
                spread(_values(runs, fig)),
                1.5,
            )
    if "blocks64_scan" in results and "blocks4" in results:
        add(
            "nn.scan 64 blocks: trace+lower+compile / 4 blocks (minilinen)",
            _scan_stats(results, "minilinen", "blocks64_scan"),
            1.5,
        )
    if not rows:
        return []
    return ["| target | limit | measured | met |", "| --- | --- | --- | --- |", *rows]


def scan_lines(results: Results, impls: list[str]) -> list[str]:
    """Trace + lower + compile of 64 blocks relative to 4 blocks, per implementation."""
    if "blocks4" not in results:
        return []
    rows = []
    for w in ("blocks64", "blocks64_scan"):
        if w in results:
            cells = [_cell(_scan_stats(results, i, w), _ratio_fmt) for i in impls]
            rows.append(f"| {w} / blocks4 | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "| trace+lower+compile | " + " | ".join(impls) + " |",
        "|" + " --- |" * (len(impls) + 1),
        *rows,
    ]


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "minilinen", "benchmarks"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine(root: Path) -> dict[str, str]:
    """Where and with what the numbers were taken."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "unknown"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": f"{len(os.sched_getaffinity(0))} usable of {os.cpu_count()}",
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": ", ".join(
            f"{d} {_version(d)}" for d in ("jax", "jaxlib", "flax", "optax", "numpy", "msgpack")
        ),
        "minilinen commit": _git_commit(root),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
    }


def markdown(
    results: Results, impls: list[str], info: dict[str, str], rounds: int, quick: bool
) -> str:
    """The whole RESULTS.md text."""
    out = ["# Benchmark results", ""]
    out += [f"- **{k}**: `{v}`" if k == "command" else f"- **{k}**: {v}" for k, v in info.items()]
    out += [
        f"- **rounds**: {rounds}{' (--quick: few samples, for debugging only)' if quick else ''}",
        "",
        "Each cell is the median over rounds, (min-max) in brackets; each round runs every",
        "implementation in a fresh process, in an order rotated every round. Ratios are",
        "taken within a round, then summarized. Tracing is `jax.jit(new_fn).trace(...)`;",
        "lower and compile are `.lower()` and `.compile()` of a fresh trace; the jitted step",
        "is the steady time per call of `jax.jit(step)` fed its own output.",
        "",
    ]
    targets = target_lines(results)
    if targets:
        out += ["## Targets (issue 7)", "", *targets, ""]
    for w, runs in results.items():
        out += [f"## {DESCRIPTIONS.get(w, w)}", ""]
        if w == "serialization":
            out += [SERIAL_NOTE, ""]
        out += [*workload_table(w, runs, impls), ""]
        extra = notes(runs)
        if extra:
            out += [*extra, ""]
    scan = scan_lines(results, impls)
    if scan:
        out += ["## Compile-time scaling with depth (workload 5)", "", *scan, ""]
    return "\n".join(out)
