"""Run the benchmarks: every workload x implementation in fresh processes, interleaved by round.

Usage: python benchmarks/run.py [--rounds N] [--workloads a,b] [--impls a,b] [--quick]
Prints the markdown table and writes it to benchmarks/RESULTS.md (raw
per-round numbers to benchmarks/RESULTS.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script (`make bench`): make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.impls import IMPLS  # noqa: E402
from benchmarks.workloads import WORKLOADS  # noqa: E402


def run_worker(
    workload: str, impl: str, quick: bool, timeout: float | None, size: str = "full"
) -> dict:
    """One measurement in a fresh Python process; its JSON, or {'error': why}."""
    cmd = [sys.executable, "-m", "benchmarks.worker", workload, impl, "--size", size]
    if quick:
        cmd.append("--quick")
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        err = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"error": err[-1] if err else f"exit status {proc.returncode}"}
    return json.loads(lines[-1])


def _csv(value: str, allowed: tuple[str, ...]) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
    return items


def main(argv: list[str] | None = None) -> None:
    """Parse options, run all rounds, print and write the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument(
        "--workloads",
        type=lambda v: _csv(v, WORKLOADS),
        default=list(WORKLOADS),
        help=f"comma-separated subset of: {', '.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--impls",
        type=lambda v: _csv(v, IMPLS),
        default=list(IMPLS),
        help="subset of minilinen,flax,raw",
    )
    parser.add_argument("--quick", action="store_true", help="few samples per process (debugging)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per worker process")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)

    info = report.machine(ROOT)
    info["load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results: report.Results = {w: {i: [] for i in args.impls} for w in args.workloads}
    total = args.rounds * len(args.workloads) * len(args.impls)
    done = 0
    for r in range(args.rounds):
        for w in args.workloads:
            k = r % len(args.impls)
            for impl in args.impls[k:] + args.impls[:k]:
                t0 = time.perf_counter()
                out = run_worker(w, impl, args.quick, args.timeout)
                done += 1
                status = out.get("error") or out.get("skipped") or "ok"
                print(
                    f"[{done}/{total}] round {r + 1} {w} {impl}: {status} "
                    f"({time.perf_counter() - t0:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                results[w][impl].append(out)
    info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    backends = {
        r["backend"]
        for runs in results.values()
        for rs in runs.values()
        for r in rs
        if "backend" in r
    }
    info["jax backend"] = ", ".join(sorted(backends)) or "unknown"
    text = report.markdown(results, args.impls, info, args.rounds, args.quick)
    print(text)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(
        json.dumps({"machine": info, "rounds": args.rounds, "results": results}, indent=1)
    )
    print(f"\nwritten to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
