"""Measure one workload with one implementation in this (fresh) process; print one JSON line.

Usage: python -m benchmarks.worker WORKLOAD IMPL [--quick] [--size tiny]
Figures are seconds (the median of this process's samples) unless named
otherwise; a workload the implementation cannot run yet prints {"skipped": why}.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass

import jax

from benchmarks import timing
from benchmarks.impls import IMPLS, load_impl
from benchmarks.workloads import WORKLOADS, Unavailable, build


@dataclass(frozen=True)
class Effort:
    """How many samples to take of each figure."""

    init: int
    trace: int
    compile: int
    chunks: int
    chunk_s: float
    apply: int
    serialize: int


FULL = Effort(init=7, trace=5, compile=2, chunks=7, chunk_s=0.3, apply=7, serialize=3)
QUICK = Effort(init=3, trace=2, compile=1, chunks=3, chunk_s=0.05, apply=3, serialize=1)


def measure_model(workload: str, impl_name: str, effort: Effort, size: str = "full") -> dict:
    """Eager init, trace, lower, compile, steady jitted step and un-jitted apply, in seconds."""
    case = build(workload, load_impl(impl_name), size)
    samples: dict[str, list[float]] = {}
    samples["init"] = timing.clock(case.init, effort.init, warmup=2)
    variables = case.init()
    state = case.make_state(variables)
    args = (state, case.batch)

    # A newly created step function each time, so jit's cache misses while
    # JAX's own helper caches stay warm (the first trace warms them).
    jax.jit(case.make_step()).trace(*args)
    samples["trace"] = timing.clock(lambda: jax.jit(case.make_step()).trace(*args), effort.trace, 0)
    samples["lower"], samples["compile"] = [], []
    for _ in range(effort.compile):
        traced = jax.jit(case.make_step()).trace(*args)
        gc.collect()
        t0 = time.perf_counter()
        lowered = traced.lower()
        t1 = time.perf_counter()
        lowered.compile()
        samples["lower"].append(t1 - t0)
        samples["compile"].append(time.perf_counter() - t1)

    samples["step"] = timing.steady_steps(
        jax.jit(case.make_step()), state, case.batch, effort.chunks, effort.chunk_s
    )
    if case.apply is not None:
        samples["apply"] = timing.clock(lambda: case.apply(variables), effort.apply, warmup=2)
    return {"figures": {k: timing.median(v) for k, v in samples.items()}, "samples": samples}


def measure_serialization(impl_name: str, effort: Effort, size: str = "full") -> dict:
    """Workload 6 (see benchmarks/serialize.py)."""
    from benchmarks import serialize

    dims = {"layers": 64, "width": 1024} if size == "full" else {"layers": 4, "width": 64}
    return {"figures": serialize.measure(load_impl(impl_name), effort.serialize, **dims)}


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, measure, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("impl", choices=IMPLS)
    parser.add_argument("--quick", action="store_true", help="fewer samples (for debugging)")
    parser.add_argument(
        "--size", choices=("full", "tiny"), default="full", help="tiny: smoke-test sizes"
    )
    args = parser.parse_args(argv)
    effort = QUICK if args.quick else FULL
    result: dict = {"workload": args.workload, "impl": args.impl}
    try:
        if args.workload == "serialization":
            result.update(measure_serialization(args.impl, effort, args.size))
        else:
            result.update(measure_model(args.workload, args.impl, effort, args.size))
    except Unavailable as e:
        result["skipped"] = str(e)
    result["backend"] = jax.default_backend()
    result["flax_imported"] = "flax" in sys.modules
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
