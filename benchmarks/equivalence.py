"""Check that a linen implementation and the hand-written JAX compute the same losses.

The raw version runs on the linen implementation's own initial variables
(ported to plain dicts), so any difference is a difference in the math, not
in the initial values. Run `python -m benchmarks.equivalence --impl flax` to
check Flax; tests/test_benchmarks_smoke.py checks minilinen.
"""

from __future__ import annotations

import argparse
from collections import Counter

import jax
import numpy as np

from benchmarks import raw
from benchmarks.impls import load_impl
from benchmarks.workloads import MODEL_WORKLOADS, Unavailable, build


def train_losses(workload: str, impl_name: str, size: str = "tiny", steps: int = 3) -> dict:
    """Losses of jitted train steps of impl, and of raw JAX started from impl's variables."""
    impl = load_impl(impl_name)
    case = build(workload, impl, size)
    ref = build(workload, load_impl("raw"), size)
    variables = jax.jit(case.init)()  # one compile instead of one per eager op
    out = {}
    for name, c, v in ((impl_name, case, variables), ("raw", ref, raw.as_dicts(variables))):
        step = jax.jit(c.make_step())
        state = c.make_state(v)
        losses = []
        for _ in range(steps):
            state, loss = step(state, c.batch)
            losses.append(float(loss))
        out[name] = losses
    if case.apply is not None:
        out[f"{impl_name}_apply"] = np.asarray(case.apply(variables))
        out["raw_apply"] = np.asarray(ref.apply(raw.as_dicts(variables)))
    return out


def main() -> None:
    """Print the losses of every workload for one implementation and for raw JAX."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", default="flax", choices=("flax", "minilinen"))
    parser.add_argument("--size", default="tiny", choices=("tiny", "full"))
    args = parser.parse_args()
    for w in MODEL_WORKLOADS:
        try:
            out = train_losses(w, args.impl, args.size)
        except Unavailable as e:
            print(f"{w}: skipped ({e})")
            continue
        a, b = np.array(out[args.impl]), np.array(out["raw"])
        err = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))
        print(f"{w}: {args.impl} {a.tolist()} raw {b.tolist()} max rel diff {err:.2e}")
        ours, floor = step_primitives(w, args.impl, args.size), step_primitives(w, "raw", args.size)
        if ours == floor:
            print(f"  train step jaxpr: the same {len(ours)} primitives in the same order")
        else:
            more, fewer = Counter(ours) - Counter(floor), Counter(floor) - Counter(ours)
            print(f"  train step jaxpr: {len(ours)} vs {len(floor)} primitives; {args.impl} has")
            print(f"  more {dict(more)} and fewer {dict(fewer)}")


def _primitives(jaxpr, out: list[str]) -> list[str]:
    for eqn in jaxpr.eqns:
        out.append(eqn.primitive.name)
        for v in eqn.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    _primitives(inner, out)
    return out


def step_primitives(workload: str, impl_name: str, size: str = "tiny") -> list[str]:
    """Primitive names, in order and nested jaxprs included, of the workload's train step."""
    case = build(workload, load_impl(impl_name), size)
    # Shapes suffice, and skip compiling every eager op of init.
    state = jax.eval_shape(lambda: case.make_state(case.init()))
    jaxpr = jax.make_jaxpr(case.make_step())(state, case.batch)
    return _primitives(jaxpr.jaxpr, [])


if __name__ == "__main__":
    main()
