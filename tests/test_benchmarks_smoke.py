"""The benchmark harness measures like with like: minilinen and hand-written JAX agree.

Each workload runs at tiny sizes with minilinen and with the raw-JAX floor
started from minilinen's own variables; the losses of a few train steps must
match, so a benchmark ratio compares the same computation. No flax here (CI
installs only the `test` extra).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import raw, report, serialize  # noqa: E402
from benchmarks.equivalence import step_primitives, train_losses  # noqa: E402
from benchmarks.impls import load_impl  # noqa: E402
from benchmarks.run import run_worker  # noqa: E402
from benchmarks.workloads import APPLY_WORKLOADS, MODEL_WORKLOADS, build  # noqa: E402


def _shapes(tree):
    return jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), raw.as_dicts(tree))


@pytest.mark.parametrize("workload", MODEL_WORKLOADS)
def test_raw_init_builds_minilinens_variable_tree(workload):
    ours = jax.eval_shape(build(workload, load_impl("minilinen"), "tiny").init)
    floor = jax.eval_shape(build(workload, load_impl("raw"), "tiny").init)
    assert _shapes(ours) == _shapes(floor)


# The primitives that carry the FLOPs; the floor must do exactly the same heavy work.
HEAVY = {"dot_general", "conv_general_dilated", "reduce_window_sum", "exp", "log", "rsqrt", "tanh"}


@pytest.mark.parametrize("workload", MODEL_WORKLOADS)
def test_raw_train_step_does_the_same_heavy_work(workload):
    ours = Counter(p for p in step_primitives(workload, "minilinen") if p in HEAVY)
    floor = Counter(p for p in step_primitives(workload, "raw") if p in HEAVY)
    assert ours["dot_general"] > 0
    assert ours == floor


@pytest.mark.slow
@pytest.mark.parametrize("workload", MODEL_WORKLOADS)
def test_minilinen_and_raw_train_steps_give_the_same_losses(workload):
    out = train_losses(workload, "minilinen", "tiny", steps=2)
    np.testing.assert_allclose(out["minilinen"], out["raw"], rtol=2e-6)
    # The steps train: the second loss differs from the first.
    assert out["raw"][0] != out["raw"][1]
    if workload in APPLY_WORKLOADS:
        np.testing.assert_allclose(out["minilinen_apply"], out["raw_apply"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("impl", ["minilinen", "raw"])
def test_serialization_codecs_round_trip(impl):
    to_bytes, from_bytes = serialize.codec(load_impl(impl))
    tree = serialize.make_tree(3, 16)
    restored = from_bytes(tree, to_bytes(tree))
    for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree_util.tree_structure(raw.as_dicts(restored)) == jax.tree_util.tree_structure(
        tree
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workload", "impl"), [("seed_mlp", "minilinen"), ("serialization", "minilinen")]
)
def test_worker_process_reports_every_figure(workload, impl):
    # No timeout of its own: how long it takes is no verdict (the suite's guard catches a hang).
    out = run_worker(workload, impl, quick=True, timeout=None, size="tiny")
    assert "error" not in out, out
    assert out["flax_imported"] is False
    figures = out["figures"]
    if workload == "serialization":
        assert set(report.SERIAL_FIGURES) <= set(figures)
        assert figures["to_bytes_MBps"] > 0 and figures["to_bytes_peak_x"] >= 0
    else:
        assert set(report.MODEL_FIGURES) <= set(figures)
        assert all(v > 0 for v in figures.values())


def test_report_takes_ratios_within_rounds_and_skips_missing_runs():
    def run(step):
        return {"figures": {"step": step}}

    results = {
        "seed_mlp": {
            "minilinen": [run(2.0), run(9.0), None],
            "flax": [run(4.0), run(18.0), run(1.0)],
            "raw": [run(1.0), run(3.0), {"skipped": "why"}],
        }
    }
    values = [report._values(results["seed_mlp"][i], "step") for i in ("minilinen", "flax")]
    # Ratios pair values of the same round only: 2/4 and 9/18, never 2/18.
    assert report.spread(report._ratios(*values)) == (0.5, 0.5, 0.5)
    table = "\n".join(
        report.workload_table("seed_mlp", results["seed_mlp"], list(results["seed_mlp"]))
    )
    assert (
        "| jitted step | 5.5 s (2 s-9 s) | 4 s (1 s-18 s) | 2 s (1 s-3 s) | 0.50x (0.50x-0.50x) |"
        in table
    )
    assert report.notes(results["seed_mlp"]) == ["- raw: skipped: why"]
