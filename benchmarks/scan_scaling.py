"""nn.scan keeps trace and compile time flat in depth; an unrolled stack grows with it.

    .venv/bin/python benchmarks/scan_scaling.py [--rounds 3] [--depths 4,8,16,32,64]
                                                [--impls scan,unrolled,flax-scan]
                                                [--out benchmarks/RESULTS_scan.md]

Each (implementation, depth) runs in a fresh process; every round runs them all,
the order rotated per round; the report shows the median over rounds with the
min-max. Measured on a train step (loss and gradient) of a stack of residual MLP
blocks with LayerNorm: ``jax.jit(fresh_step).trace(params, x)`` after one warm-up
trace of another fresh step, then ``.lower()`` and ``.compile()`` of that trace.
Parameters are abstract (``jax.eval_shape`` of ``init``), so nothing runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTE = (
    "Why: `nn.scan` traces its body twice (once to find the variables shared by every "
    "iteration, once as the loop body) whatever N is, and XLA compiles one loop body; the "
    "unrolled stack traces and compiles every block. At small N the loop costs a fixed "
    "overhead, so the unrolled stack is cheaper there. On a shared machine differences "
    "under ~20% between neighbouring rows are noise."
)
WIDTH, HIDDEN, BATCH = 64, 128, 8


def build(impl: str, depth: int):
    """The model for ``impl`` at ``depth`` and its namespace."""
    if impl.startswith("flax"):
        import flax.linen as nn

        scan = nn.scan
    else:
        sys.path.insert(0, str(ROOT))
        import minilinen as nn
        from minilinen.transforms import scan

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.gelu(nn.Dense(HIDDEN)(nn.LayerNorm()(x)))
            return x + nn.Dense(WIDTH)(h)

    class Step(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            return Block()(x), None

    class Scanned(nn.Module):
        @nn.compact
        def __call__(self, x):
            blocks = scan(
                Step, variable_axes={"params": 0}, split_rngs={"params": True}, length=depth
            )
            return blocks(name="blocks")(x, None)[0]

    class Unrolled(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(depth):
                x = Block()(x)
            return x

    return Unrolled() if impl == "unrolled" else Scanned()


def measure(impl: str, depth: int) -> dict:
    """Trace, lower and compile seconds of one train step (run in its own process)."""
    import jax
    import jax.numpy as jnp

    model = build(impl, depth)
    x = jnp.ones((BATCH, WIDTH))
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)

    def fresh_step():
        def step(params, x):
            loss = lambda p: jnp.mean(model.apply(p, x) ** 2)  # noqa: E731
            return jax.value_and_grad(loss)(params)

        return step

    jax.jit(fresh_step()).trace(params, x)  # warm JAX's own caches
    t0 = time.perf_counter()
    traced = jax.jit(fresh_step()).trace(params, x)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    lowered.compile()
    t3 = time.perf_counter()
    return {"trace": t1 - t0, "lower": t2 - t1, "compile": t3 - t2, "total": t3 - t0}


def run_worker(impl: str, depth: int) -> dict:
    """One measurement in a fresh interpreter."""
    cmd = [sys.executable, __file__, "--worker", impl, str(depth)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(samples: list[float]) -> str:
    """'median (min-max)' in seconds, or ms below a second."""
    med, lo, hi = statistics.median(samples), min(samples), max(samples)
    if hi < 1:
        return f"{med * 1e3:.0f} ms ({lo * 1e3:.0f}-{hi * 1e3:.0f})"
    return f"{med:.2f} s ({lo:.2f}-{hi:.2f})"


def report(results: dict, impls: list[str], depths: list[int], rounds: int, cmd: str) -> str:
    """The markdown report."""
    import jax

    lines = [
        "# nn.scan: trace and compile time against depth",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__}, CPU backend; {rounds} rounds, fresh process per "
        "measurement, order rotated per round; median (min-max).",
        "",
        f"Model: train step (loss, gradient) of N residual blocks "
        f"(LayerNorm, Dense {WIDTH}->{HIDDEN}, gelu, Dense {HIDDEN}->{WIDTH}), batch {BATCH}. "
        "`scan` is minilinen's `nn.scan` over one block with params stacked on a leading "
        "axis; `unrolled` calls N separate blocks; `flax-scan` is Flax's `nn.scan` (reference).",
        "",
    ]
    for metric in ("trace", "compile", "total"):
        lines += [f"## {metric} (trace + lower + compile)" if metric == "total" else f"## {metric}"]
        lines += ["", "| N | " + " | ".join(impls) + " |", "|---|" + "---|" * len(impls)]
        for depth in depths:
            cells = [summary([r[metric] for r in results[(impl, depth)]]) for impl in impls]
            lines.append(f"| {depth} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## growth from N=4 to N=64 (median total)", ""]
    for impl in impls:
        first = statistics.median(r["total"] for r in results[(impl, depths[0])])
        last = statistics.median(r["total"] for r in results[(impl, depths[-1])])
        lines.append(f"- {impl}: x{last / first:.2f} (N={depths[0]} -> N={depths[-1]})")
    lines += ["", NOTE, ""]
    return "\n".join(lines)


def main() -> None:
    """Run every (implementation, depth) for several rounds and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "DEPTH"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--depths", default="4,8,16,32,64")
    parser.add_argument("--impls", default="scan,unrolled,flax-scan")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_scan.md"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker[0], int(args.worker[1]))))
        return
    impls = args.impls.split(",")
    depths = [int(d) for d in args.depths.split(",")]
    jobs = [(impl, depth) for depth in depths for impl in impls]
    results: dict = {job: [] for job in jobs}
    for r in range(args.rounds):
        shift = r % len(jobs)
        for impl, depth in jobs[shift:] + jobs[:shift]:
            results[(impl, depth)].append(run_worker(impl, depth))
            print(f"round {r + 1}: {impl} N={depth}: {results[(impl, depth)][-1]}", flush=True)
    cmd = "python benchmarks/scan_scaling.py " + " ".join(sys.argv[1:])
    text = report(results, impls, depths, args.rounds, cmd.strip())
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
