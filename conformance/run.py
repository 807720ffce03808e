"""Runs Flax 0.12.8's tests/linen against minilinen and checks the ratchet.

Usage (``make conformance`` fetches the sdist, then runs this)::

    python conformance/run.py            # all 15 files; writes RESULTS.md; fails on a regression
    python conformance/run.py --update   # also adds the tests that now pass to passing.txt
    python conformance/run.py tests/linen/linen_test.py -k Pool   # a selection, for iterating

The tests run unmodified, in the environment Flax's own tests/run_all_tests.sh sets
(rank promotion raises, 4 simulated CPU devices, FLAX_PROFILE=1) and under Flax's own
pytest settings (its pyproject.toml, which turns warnings into errors).

Files here: ``passing.txt`` (the ratchet: every listed test must keep passing; the list
only grows), ``excluded.txt`` (tests of Flax internals, one id and reason a line; never
run), ``RESULTS.md`` (per-file counts and the commonest failure causes, from a full run).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SDIST = ROOT / ".cache" / "conformance" / "flax-0.12.8"
OUTCOMES = ROOT / ".cache" / "conformance" / "outcomes.json"


def read_list(path: Path) -> dict[str, str]:
    """``test id  # reason`` lines (blank lines and ``#`` comments skipped)."""
    entries = {}
    if path.exists():
        for line in path.read_text().splitlines():
            test_id, _, reason = line.partition("#")
            if test_id.strip():
                entries[test_id.strip()] = reason.strip()
    return entries


def run_pytest(selection: list[str], workers: int, timeout: int) -> None:
    env = dict(os.environ)
    env.update(
        JAX_NUMPY_RANK_PROMOTION="raise",
        FLAX_PROFILE="1",
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        CONFORMANCE_OUT=str(OUTCOMES),
    )
    if OUTCOMES.exists():
        OUTCOMES.unlink()
    args = selection or ["tests/linen"]
    cmd = [sys.executable, "-m", "pytest", "-p", "conformance.plugin", "-q", "-rN"]
    cmd += ["-p", "no:cacheprovider", "--continue-on-collection-errors"]
    cmd += [f"--timeout={timeout}", f"--rootdir={SDIST}"]
    cmd += ["-n", str(workers)] if workers > 0 else []
    cmd += [str(SDIST / a) if a.startswith("tests/") else a for a in args]
    print("+", " ".join(cmd), flush=True)
    # pytest's exit code is ours to interpret: failures are expected until conformance is full.
    subprocess.run(cmd, cwd=ROOT, env=env)
    if not OUTCOMES.exists():
        sys.exit("conformance: pytest wrote no outcomes (see its output above)")


def cause(message: str) -> str:
    """A failure message with its specifics (numbers, shapes, addresses) blurred, for grouping."""
    message = re.sub(r"0x[0-9a-f]+", "0x…", message)
    message = re.sub(r"\d+(\.\d+)?", "N", message)
    return message[:160]


def write_results(outcomes: dict[str, dict], excluded: dict[str, str]) -> None:
    per_file: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for test_id, entry in outcomes.items():
        per_file[test_id.split("::")[0]][entry["outcome"]] += 1
    for test_id in excluded:
        per_file[test_id.split("::")[0]]["excluded"] += 1
    lines = [
        "# Conformance: Flax 0.12.8's tests/linen on minilinen",
        "",
        "Written by `make conformance` (conformance/run.py); do not edit by hand.",
        "",
        "| file | tests | passed | failed | excluded | skipped |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    total: collections.Counter = collections.Counter()
    for name in sorted(per_file):
        c = per_file[name]
        if c["collect-error"]:
            msg = outcomes[name]["message"]
            lines.append(f"| {Path(name).name} | ? | 0 | import error: `{msg}` | | |")
            continue
        tests = sum(c.values())
        failed = c["failed"] + c["incomplete"]
        row = [tests, c["passed"], failed, c["excluded"], c["skipped"]]
        total.update(tests=tests, passed=c["passed"], failed=failed, excluded=c["excluded"])
        total.update(skipped=c["skipped"])
        lines.append(f"| {Path(name).name} | " + " | ".join(map(str, row)) + " |")
    keys = ["tests", "passed", "failed", "excluded", "skipped"]
    lines.append("| **all** | " + " | ".join(f"**{total[k]}**" for k in keys) + " |")
    causes = collections.Counter(
        cause(e["message"]) for e in outcomes.values() if e["outcome"] in ("failed", "incomplete")
    )
    lines += ["", "## Commonest failure causes", "", "| tests | first line of the error |"]
    lines += ["| ---: | --- |"]
    lines += [f"| {n} | `{msg.replace('|', '/')}` |" for msg, n in causes.most_common(40)]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="add new passes to passing.txt")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (0: none)")
    parser.add_argument("--timeout", type=int, default=900, help="per-test hang guard, seconds")
    opts, selection = parser.parse_known_args()
    if not (SDIST / "tests" / "linen").is_dir():
        sys.exit(f"conformance: {SDIST} is missing; `make conformance` fetches it")
    run_pytest(selection, opts.workers, opts.timeout)
    outcomes = json.loads(OUTCOMES.read_text())
    excluded = read_list(HERE / "excluded.txt")
    passing = read_list(HERE / "passing.txt")
    passed = {t for t, e in outcomes.items() if e["outcome"] == "passed"}
    if not selection:
        write_results(outcomes, excluded)
    regressions = sorted(t for t in passing if t in outcomes and t not in passed)
    new = sorted(passed - set(passing))
    not_run = [t for t in passing if t not in outcomes] if not selection else []
    if opts.update and new:
        ids = sorted(set(passing) | passed)
        (HERE / "passing.txt").write_text("\n".join(ids) + "\n")
        print(f"conformance: added {len(new)} newly passing tests to conformance/passing.txt")
    elif new:
        print(f"conformance: {len(new)} tests pass that passing.txt does not list yet; add them")
        print("  with `make conformance CONFORMANCE_ARGS=--update` (the list only grows).")
    print(f"conformance: {len(passed)} passed of {len(outcomes)} run, {len(excluded)} excluded")
    for test_id in regressions + not_run:
        entry = outcomes.get(test_id, {"outcome": "not run", "message": ""})
        print(f"REGRESSION {test_id}: {entry['outcome']} {entry['message']}")
    if regressions or not_run:
        sys.exit(f"conformance: {len(regressions) + len(not_run)} tests in passing.txt now fail")


if __name__ == "__main__":
    main()
