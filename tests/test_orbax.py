"""Orbax on minilinen state with no adapter, and tree paths equal to Flax's.

Tree paths are what Orbax names arrays by (and what optax masks and logging
read); ``golden/orbax/tree_paths.json`` holds the real Flax's paths and the
checkpoints under ``golden/orbax/`` were written by the real Flax
(``golden/make_golden_orbax.py``). The minilinen-to-Flax direction restores in a
fresh process with the real Flax (``orbax_flax_worker.py``), the sharded cases
run on 8 simulated devices (``orbax_sharded_worker.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from golden import orbax_cases as cases

import minilinen as nn
from minilinen.core import FrozenDict, freeze
from minilinen.training import train_state

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "orbax"


def _assert_trees_equal(a, b):
    """Same paths and values (static fields such as ``apply_fn`` may be other objects)."""
    flat_a, flat_b = (jax.tree_util.tree_flatten_with_path(t)[0] for t in (a, b))
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    for (path, x), (_, y) in zip(flat_a, flat_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


def _fresh_state():
    return cases.make_state(nn, train_state, freeze)


# --- tree paths ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["variables", "frozen_mixed", "train_state"])
def test_key_entries_and_keystr_equal_flax(name):
    golden = json.loads((GOLDEN / "tree_paths.json").read_text())[name]
    tree = cases.path_cases(nn, train_state, freeze)[name]
    assert cases.describe_paths(tree) == golden


def test_paths_of_inits_own_variables_equal_flax():
    golden = json.loads((GOLDEN / "tree_paths.json").read_text())["variables"]
    variables = cases.model(nn).init(jax.random.PRNGKey(0), cases.data()[0])
    assert type(variables) is FrozenDict  # as init returns it, not re-frozen
    assert cases.describe_paths(variables) == golden


def test_frozen_dict_paths_are_dict_keys_only():
    fd = freeze({"params": {"Dense_0": {"kernel": 1.0}}})
    ((path, _),) = jax.tree_util.tree_flatten_with_path(fd)[0]
    assert path == tuple(jax.tree_util.DictKey(k) for k in ("params", "Dense_0", "kernel"))
    # tree_map_with_path over two trees flattens both the same way it flattens one.
    doubled = jax.tree_util.tree_map_with_path(lambda p, a, b: a + b, fd, fd)
    assert isinstance(doubled, FrozenDict) and doubled["params"]["Dense_0"]["kernel"] == 2.0


def test_optax_labels_built_from_paths_select_by_the_first_key():
    params = _fresh_state().params
    # Freeze the first Dense layer: labels read from each path's first entry.
    labels = jax.tree_util.tree_map_with_path(
        lambda p, _: "frozen" if p[0].key == "Dense_0" else "train", params
    )
    tx = optax.multi_transform({"train": optax.sgd(1.0), "frozen": optax.set_to_zero()}, labels)
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new["Dense_0"]["kernel"], params["Dense_0"]["kernel"])
    np.testing.assert_array_equal(new["Dense_1"]["kernel"], params["Dense_1"]["kernel"] - 1.0)


def test_flatten_and_flatten_with_path_agree():
    state = _fresh_state()
    leaves, treedef = jax.tree_util.tree_flatten(state)
    with_path, path_treedef = jax.tree_util.tree_flatten_with_path(state)
    assert path_treedef == treedef
    assert all(a is b for a, b in zip(leaves, (v for _, v in with_path), strict=True))
    rebuilt = jax.tree_util.tree_unflatten(path_treedef, leaves)
    assert isinstance(rebuilt.params, FrozenDict)
    _assert_trees_equal(rebuilt, state)


def test_jit_and_vmap_keep_frozen_dicts_and_iteration_order():
    fd = FrozenDict({"b": jnp.ones(3), "a": {"y": jnp.zeros(3), "x": jnp.arange(3.0)}})
    out = jax.jit(lambda t: jax.tree_util.tree_map(lambda v: v + 1, t))(fd)
    assert isinstance(out, FrozenDict) and isinstance(out["a"], FrozenDict)
    batched = jax.vmap(lambda t: jax.tree_util.tree_map(jnp.sum, t))(fd)
    assert isinstance(batched, FrozenDict) and batched["b"].shape == (3,)
    # Unflattening builds the dict in sorted order, as Flax's does; the user's own stays.
    assert list(fd) == ["b", "a"] and list(out) == ["a", "b"]
    np.testing.assert_array_equal(out["a"]["x"], jnp.arange(1.0, 4.0))


# --- StandardCheckpointer and CheckpointManager --------------------------------


def test_standard_checkpointer_round_trips_variables_as_frozen_dicts(tmp_path):
    state = _fresh_state()
    variables = freeze({"params": state.params, "batch_stats": state.batch_stats})
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "variables", variables)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(tmp_path / "variables", variables)
    assert type(restored) is FrozenDict and type(restored["params"]["block"]) is FrozenDict
    _assert_trees_equal(restored, variables)


def test_standard_checkpointer_round_trips_a_train_state_subclass(tmp_path):
    state, _ = cases.train(_fresh_state(), 2)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", state)
    checkpointer.wait_until_finished()
    template = _fresh_state()
    restored = checkpointer.restore(tmp_path / "state", template)
    assert type(restored) is type(template)
    assert type(restored.params) is FrozenDict and type(restored.batch_stats) is FrozenDict
    assert type(restored.opt_state[0]) is optax.ScaleByAdamState
    assert int(restored.step) == 2
    _assert_trees_equal(restored, state)
    # It trains on exactly as the state it was saved from.
    assert cases.train(restored, 1)[1] == cases.train(state, 1)[1]


def test_checkpoint_manager_keeps_the_latest_and_restores_composite_items(tmp_path):
    state = _fresh_state()
    options = ocp.CheckpointManagerOptions(max_to_keep=2)
    with ocp.CheckpointManager(tmp_path / "run", options=options) as manager:
        assert manager.latest_step() is None
        for step in range(1, 5):
            state, losses = cases.train(state, 1)
            manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    meta=ocp.args.JsonSave({"loss": losses[0], "step": step}),
                ),
            )
        manager.wait_until_finished()
        assert manager.all_steps() == [3, 4] and manager.latest_step() == 4
    with ocp.CheckpointManager(tmp_path / "run", options=options) as manager:
        restored = manager.restore(
            manager.latest_step(),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_fresh_state()), meta=ocp.args.JsonRestore()
            ),
        )
    assert restored.meta["step"] == 4 and restored.meta["loss"] == losses[0]
    assert type(restored.state.batch_stats) is FrozenDict
    _assert_trees_equal(restored.state, state)


@pytest.mark.slow
def test_sharded_params_restore_onto_their_named_shardings(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    done = subprocess.run(
        [sys.executable, str(HERE / "orbax_sharded_worker.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 8
    assert report["container"] == report["params_container"] == "FrozenDict"
    assert report["wanted"]["params/Dense_0/kernel"] == "P('data', 'model')"
    for target in ("same", "replicated", "swapped"):
        for path, leaf in report[target].items():
            assert leaf["devices"] == list(range(8)), (target, path)
            assert leaf["shards_match"] and leaf["equal"], (target, path)
    same = report["same"]
    for path, spec in report["wanted"].items():
        assert same[path]["spec"] == spec
    # Every device holds only its own (4, 4) block of the (8, 16) kernel.
    assert same["params/Dense_0/kernel"]["shard_shapes"] == [[4, 4]]
    assert same["params/Dense_1/kernel"]["shard_shapes"] == [[4, 8]]
    assert report["replicated"]["params/Dense_0/kernel"]["shard_shapes"] == [[8, 16]]
    assert report["swapped"]["params/Dense_0/kernel"]["spec"] == "P('model', 'data')"
    assert report["swapped"]["params/Dense_0/kernel"]["shard_shapes"] == [[2, 8]]


# --- across libraries ----------------------------------------------------------


def test_flax_variables_checkpoint_restores_into_minilinen_variables():
    state = _fresh_state()
    variables = freeze({"params": state.params, "batch_stats": state.batch_stats})
    template = jax.tree_util.tree_map(jnp.zeros_like, variables)
    restored = ocp.StandardCheckpointer().restore(GOLDEN / "flax_variables", template)
    assert type(restored) is FrozenDict and type(restored["batch_stats"]) is FrozenDict
    # minilinen's init gives Flax's parameters bit for bit, so these are its own values.
    _assert_trees_equal(restored, variables)


def test_flax_train_state_checkpoint_continues_training_in_minilinen():
    flax_run = json.loads((GOLDEN / "flax_run.json").read_text())
    template = _fresh_state()
    restored = ocp.StandardCheckpointer().restore(GOLDEN / "flax_train_state", template)
    assert type(restored) is type(template) and type(restored.params) is FrozenDict
    assert int(restored.step) == cases.STEPS_BEFORE_SAVE
    # The same run without the switch, in minilinen: the same state as Flax's.
    own, before = cases.train(template, cases.STEPS_BEFORE_SAVE)
    np.testing.assert_allclose(before, flax_run["losses_before_save"], rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(own)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    _, after = cases.train(restored, cases.STEPS_AFTER_SAVE)
    np.testing.assert_allclose(after, flax_run["losses_after_restore"], rtol=1e-5)


@pytest.mark.slow
def test_minilinen_checkpoint_restores_into_flax_and_continues(tmp_path):
    state, _ = cases.train(_fresh_state(), cases.STEPS_BEFORE_SAVE)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", state)
    checkpointer.wait_until_finished()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run(
        [sys.executable, str(HERE / "orbax_flax_worker.py"), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["state_type"] == "TrainStateWithStats" and report["same_structure"]
    assert report["params_frozen"] and report["batch_stats_frozen"]
    assert report["step"] == cases.STEPS_BEFORE_SAVE
    _, ours = cases.train(state, cases.STEPS_AFTER_SAVE)
    np.testing.assert_allclose(report["losses"], ours, rtol=1e-5)
