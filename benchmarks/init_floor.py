"""The floor of a linen-style eager init: raw init plus one raw un-jitted forward pass.

A linen `init` must run the forward pass to learn the shapes of its parameters,
so hand-written init alone is not its floor. This script times, in one process,
interleaved and with the order rotated every round: minilinen's eager `init`,
raw init, and raw init followed by raw's eager forward on the same batch.
Run: `.venv/bin/python -m benchmarks.init_floor --rounds 7`.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

from benchmarks import raw, timing
from benchmarks.impls import load_impl
from benchmarks.workloads import build

WORKLOADS = ("seed_mlp", "cnn_bn", "mlp48", "transformer")


def _raw_forward(workload: str, variables: Any, batch: tuple) -> Any:
    """Raw JAX's eager forward pass of one workload, as its linen model runs in init."""
    p, x = variables["params"], batch[0]
    if workload == "seed_mlp":
        return raw.seed_mlp(p, x)
    if workload == "mlp48":
        return raw.deep_mlp(p, x)
    if workload == "transformer":
        return raw.transformer(p, x)
    if workload == "cnn_bn":
        return raw.cnn(p, variables["batch_stats"], x, False)
    raise ValueError(f"no raw forward for {workload!r}")


def _fns(workload: str) -> dict[str, Callable[[], Any]]:
    ours = build(workload, load_impl("minilinen"))
    ref = build(workload, load_impl("raw"))

    def floor() -> Any:
        variables = ref.init()
        return variables, _raw_forward(workload, variables, ref.batch)

    return {"minilinen init": ours.init, "raw init": ref.init, "raw init + forward": floor}


def measure(workload: str, rounds: int, repeats: int) -> dict[str, list[float]]:
    """Per-round medians (seconds) of each function, rounds interleaved and order rotated."""
    fns = _fns(workload)
    names = list(fns)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            out[n].append(statistics.median(timing.clock(fns[n], repeats, warmup=2)))
    return out


def _ratio(a: list[float], b: list[float]) -> str:
    rs = [x / y for x, y in zip(a, b)]
    return f"{statistics.median(rs):.2f}x ({min(rs):.2f}x-{max(rs):.2f}x)"


def main() -> None:
    """Print a markdown table: medians and same-round ratios against both floors."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    args = parser.parse_args()
    print("| workload | minilinen init | raw init | raw init + forward (floor) |", end="")
    print(" minilinen / raw init | minilinen / floor |")
    print("| --- | --- | --- | --- | --- | --- |")
    for w in args.workloads.split(","):
        t = measure(w, args.rounds, args.repeats)
        ms = {k: f"{statistics.median(v) * 1e3:.1f} ms" for k, v in t.items()}
        ours = t["minilinen init"]
        print(
            f"| {w} | {ms['minilinen init']} | {ms['raw init']} | {ms['raw init + forward']} | "
            f"{_ratio(ours, t['raw init'])} | {_ratio(ours, t['raw init + forward'])} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
