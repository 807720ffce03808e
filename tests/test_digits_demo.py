"""A short run of ``examples/digits.py``: it learns, checkpoints, restores and resumes.

The full demo (``make demo``) trains on all 1,437 training images; here a small
subset and a few epochs keep the test quick while still checking that the CNN
learns, that the restored checkpoint scores exactly the trained accuracy, and
that ``--resume`` continues a run to the same final state.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import minilinen as nn
from minilinen.training import checkpoints

DEMO = Path(__file__).resolve().parents[1] / "examples" / "digits.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("digits_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo():
    return load_demo()


SHORT = ["--epochs", "3", "--batch-size", "32", "--train-subset", "320", "--seed", "0"]


@pytest.fixture(scope="module")
def first_run(demo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("digits")
    result = demo.main([*SHORT, "--workdir", str(workdir)])
    return workdir, result


@pytest.mark.slow
def test_short_run_learns_and_restores_identically(first_run, capsys):
    workdir, result = first_run
    # 320 images and 3 epochs: far above the 10% of guessing, below the full demo.
    assert result["test_accuracy"] > 0.8
    assert result["restored_accuracy"] == result["test_accuracy"]
    assert [os.path.basename(p) for p in sorted(os.listdir(workdir / "checkpoints"))] == [
        "checkpoint_1",
        "checkpoint_2",
        "checkpoint_3",
    ]
    assert result["checkpoint"].endswith("checkpoint_3")
    history = json.loads((workdir / "history.json").read_text())
    assert len(history["loss"]) == len(history["test_accuracy"]) == 3
    assert history["loss"][-1] < history["loss"][0]
    png = Path(result["plot"]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


@pytest.mark.slow
def test_resume_continues_to_the_same_state(demo, first_run, tmp_path):
    workdir, result = first_run
    # Copy epochs 1-2 of the first run, then resume: epoch 3 must be replayed exactly
    # (same shuffles, same dropout keys), so the final checkpoint equals the first run's.
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    for name in ("checkpoint_1", "checkpoint_2"):
        data = (workdir / "checkpoints" / name).read_bytes()
        (resumed_dir / "checkpoints" / name).write_bytes(data)
    history = json.loads((workdir / "history.json").read_text())
    (resumed_dir / "history.json").write_text(json.dumps(history))  # trimmed on resume
    resumed = demo.main([*SHORT, "--workdir", str(resumed_dir), "--resume"])
    assert resumed["test_accuracy"] == result["test_accuracy"]
    assert resumed["history"]["loss"][:2] == history["loss"][:2]
    assert len(resumed["history"]["loss"]) == 3
    first = checkpoints.restore_checkpoint(workdir / "checkpoints", target=None)
    again = checkpoints.restore_checkpoint(resumed_dir / "checkpoints", target=None)
    for a, b in zip(jax.tree_util.tree_leaves(first), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(a, b)


def test_model_summary_counts(demo):
    # Conv 3x3 1->32: 9*32+32 = 320; BatchNorm(32): 64 + 64 stats; Conv 3x3 32->64:
    # 9*32*64+64 = 18,496; BatchNorm(64): 128 + 128; pooled 4*4*64 = 1,024 -> Dense 128:
    # 131,200; Dense 128->10: 1,290. Params 151,498; with stats 151,690.
    x = np.zeros((1, 8, 8, 1), np.float32)
    variables = jax.eval_shape(lambda: demo.CNN().init(jax.random.PRNGKey(0), x, train=False))
    count = lambda tree: sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(tree))
    assert count(variables["params"]) == 151_498
    assert count(variables["batch_stats"]) == 192
    text = demo.CNN().tabulate(
        jax.random.PRNGKey(0), x, train=False, console_kwargs={"force_terminal": False}
    )
    assert "Total Parameters: 151,690 (606.8 KB)" in text
    assert isinstance(demo.CNN(), nn.Module)


def test_flags_and_defaults(demo):
    args = demo.parse_args([])
    assert (args.epochs, args.batch_size, args.seed, args.resume) == (15, 32, 0, False)
    args = demo.parse_args(["--epochs", "2", "--batch-size", "8", "--seed", "3", "--resume"])
    assert (args.epochs, args.batch_size, args.seed, args.resume) == (2, 8, 3, True)


def test_data_split_is_stratified_and_scaled(demo):
    x_train, y_train, x_test, y_test = demo.load_data(0)
    assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert 0.0 == x_train.min() and x_train.max() == 1.0
    assert set(np.unique(y_test)) == set(range(10))
    assert np.bincount(y_test).min() >= 35  # every class about a tenth of the test set
