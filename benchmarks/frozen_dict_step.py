"""What FrozenDict parameters cost a jitted step: the seed-MLP adam step with the
state's mappings as FrozenDicts or as plain dicts, for minilinen and for Flax.

Usage: python -m benchmarks.frozen_dict_step [--rounds 5] [--chunks 40] [--impls minilinen,flax]
Each round is a fresh process holding every variant; it runs them chunk by
chunk in an order rotated every chunk, so machine load drifts over all of them
alike. Per chunk it times the steady jitted step (fed its own output) and one
flatten + unflatten of the train state, the pytree work a dispatch does; ratios
to the same library's plain-dict variant are taken per chunk (median and 25-75%
range over all chunks of all rounds), and between the best chunks, which the
shared machine's load disturbs least.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(ROOT))

STEPS_PER_CHUNK = 200
FLATTENS_PER_CHUNK = 1000


def _variants(impls: list[str]) -> dict:
    """name -> (jitted step, train state, batch) for every impl x {frozen, dict}."""
    import jax

    from benchmarks.impls import load_impl
    from benchmarks.workloads import build

    out = {}
    for impl_name in impls:
        impl = load_impl(impl_name)
        frozen_type = impl.nn.FrozenDict if impl_name == "minilinen" else _flax_frozen_dict()
        case = build("seed_mlp", impl, "full")
        variables = case.init()
        plain = jax.tree_util.tree_map(lambda x: x, _thaw(variables))
        for kind, tree in (("frozen", frozen_type(plain)), ("dict", plain)):
            state = case.make_state(tree)
            assert type(state[0]) is (dict if kind == "dict" else frozen_type), type(state[0])
            out[f"{impl_name}/{kind}"] = (jax.jit(case.make_step()), state, case.batch)
    return out


def _flax_frozen_dict() -> type:
    from flax.core import FrozenDict

    return FrozenDict


def _thaw(tree):
    if hasattr(tree, "items"):
        return {k: _thaw(v) for k, v in tree.items()}
    return tree


def measure(impls: list[str], chunks: int) -> dict:
    """In this process: per-chunk seconds per step and per flatten+unflatten of each variant."""
    import jax

    variants = _variants(impls)
    states = {}
    for name, (step, state, batch) in variants.items():
        for _ in range(20):
            state, loss = step(state, batch)
        states[name] = jax.block_until_ready(state)
    names = list(variants)
    steps = {n: [] for n in names}
    flats = {n: [] for n in names}
    for c in range(chunks):
        k = c % len(names)
        for name in names[k:] + names[:k]:
            step, _, batch = variants[name]
            state = states[name]
            t0 = time.perf_counter()
            for _ in range(STEPS_PER_CHUNK):
                state, loss = step(state, batch)
            jax.block_until_ready((state, loss))
            steps[name].append((time.perf_counter() - t0) / STEPS_PER_CHUNK)
            states[name] = state
            t0 = time.perf_counter()
            for _ in range(FLATTENS_PER_CHUNK):
                leaves, treedef = jax.tree_util.tree_flatten(state)
                treedef.unflatten(leaves)
            flats[name].append((time.perf_counter() - t0) / FLATTENS_PER_CHUNK)
    return {"step": steps, "flatten": flats}


def _summary(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.3f}x ({q[0]:.3f}x-{q[2]:.3f}x)"


def report(rounds: list[dict], impls: list[str]) -> str:
    """Markdown: per variant, the best chunk and the median per-chunk ratio to the same
    library's plain-dict variant (25-75% range); the best chunks are least disturbed by load."""
    head = "| variant |"
    for fig in ("jitted step", "flatten+unflatten"):
        head += f" {fig}: best | best / dict's best | median per-chunk ratio to dict |"
    lines = [head, "|" + " --- |" * 7]
    for impl in impls:
        for kind in ("dict", "frozen"):
            name, base = f"{impl}/{kind}", f"{impl}/dict"
            cells = []
            for fig in ("step", "flatten"):
                own = [x for r in rounds for x in r[fig][name]]
                ref = [x for r in rounds for x in r[fig][base]]
                ratios = [a / b for a, b in zip(own, ref, strict=True)]
                cells += [f"{min(own) * 1e6:.2f} us", f"{min(own) / min(ref):.3f}x"]
                cells.append(_summary(ratios))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "flax" in impls and "minilinen" in impls:
        own = [x for r in rounds for x in r["step"]["minilinen/frozen"]]
        ref = [x for r in rounds for x in r["step"]["flax/frozen"]]
        ratios = [a / b for a, b in zip(own, ref, strict=True)]
        lines.append("")
        lines.append(
            f"minilinen/frozen step / flax/frozen step: best {min(own) / min(ref):.3f}x, "
            f"median per chunk {_summary(ratios)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the rounds in fresh processes (or, with --worker, one round here) and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=40, help="chunks per variant per round")
    parser.add_argument("--impls", default="minilinen,flax", help="minilinen and/or flax")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    impls = [i for i in args.impls.split(",") if i]
    if args.worker:
        print(json.dumps(measure(impls, args.chunks)), flush=True)
        return
    import minilinen

    rounds = []
    for r in range(args.rounds):
        cmd = [sys.executable, "-m", "benchmarks.frozen_dict_step", "--worker"]
        cmd += ["--impls", args.impls, "--chunks", str(args.chunks)]
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, check=True, env=os.environ.copy()
        )
        rounds.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"minilinen from {Path(minilinen.__file__).parent}, load {os.getloadavg()[0]:.2f}\n")
    print(report(rounds, impls))


if __name__ == "__main__":
    main()
