"""TrainState: create, apply_gradients, replace, subclasses, jit, and a real training loop."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from golden.serialization_cases import run_training

import minilinen as nn
from minilinen import serialization
from minilinen.core import FrozenDict, freeze
from minilinen.training import TrainState
from minilinen.training.train_state import OVERWRITE_WITH_GRADIENT

GOLDEN = Path(__file__).parent / "golden" / "serialization"


def params() -> dict:
    return {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}


def apply_fn(variables, x):
    return x @ variables["params"]["w"] + variables["params"]["b"]


def grads_for(p: Any) -> Any:
    return jax.tree_util.tree_map(lambda v: 0.5 * v + 1.0, p)


def assert_trees_equal(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_create_initializes_the_optimizer():
    tx = optax.adam(1e-2)
    state = TrainState.create(apply_fn=apply_fn, params=params(), tx=tx)
    assert state.step == 0 and state.apply_fn is apply_fn and state.tx is tx
    assert_trees_equal(state.opt_state, tx.init(params()))


def test_apply_gradients_is_one_optax_step():
    tx = optax.adam(1e-2)
    state = TrainState.create(apply_fn=apply_fn, params=params(), tx=tx)
    new = state.apply_gradients(grads=grads_for(state.params))
    updates, opt_state = tx.update(grads_for(params()), tx.init(params()), params())
    assert new.step == 1
    assert_trees_equal(new.params, optax.apply_updates(params(), updates))
    assert_trees_equal(new.opt_state, opt_state)
    assert state.step == 0  # frozen: the old state is untouched


def test_static_fields_are_not_leaves():
    state = TrainState.create(apply_fn=apply_fn, params=params(), tx=optax.sgd(0.1))
    leaves = jax.tree_util.tree_leaves(state)
    assert len(leaves) == 1 + 2  # step and two params; sgd's state is empty
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.step = 3
    assert state.replace(step=5).step == 5


def test_through_jit_as_argument_and_result():
    traces = []

    @jax.jit
    def train_step(state, x):
        traces.append(1)

        def loss_fn(p):
            return jnp.sum(state.apply_fn({"params": p}, x) ** 2)

        return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

    state = TrainState.create(apply_fn=apply_fn, params=params(), tx=optax.adam(1e-3))
    x = jnp.ones((4, 2))
    for _ in range(3):
        state = train_step(state, x)
    assert isinstance(state, TrainState) and int(state.step) == 3
    assert state.apply_fn is apply_fn
    assert len(traces) == 1  # step 0 and the returned step trace alike (weak int32)


class BatchStatsState(TrainState):
    batch_stats: Any


def test_subclass_with_batch_stats():
    stats = {"mean": jnp.zeros(3)}
    state = BatchStatsState.create(
        apply_fn=apply_fn, params=params(), tx=optax.sgd(0.1), batch_stats=stats
    )
    assert_trees_equal(state.batch_stats, stats)
    new = jax.jit(
        lambda s: s.apply_gradients(grads=grads_for(s.params), batch_stats={"mean": jnp.ones(3)})
    )(state)
    assert isinstance(new, BatchStatsState) and int(new.step) == 1
    np.testing.assert_array_equal(new.batch_stats["mean"], np.ones(3))
    sd = serialization.to_state_dict(new)
    assert list(sd) == ["step", "params", "opt_state", "batch_stats"]
    back = serialization.from_bytes(state, serialization.to_bytes(new))
    assert_trees_equal(back.batch_stats, new.batch_stats)


def test_inject_hyperparams_read_back_as_in_seed_001():
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    state = TrainState.create(apply_fn=apply_fn, params=params(), tx=tx)
    assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(0.1)
    schedule = optax.linear_schedule(init_value=1.0, end_value=0.0, transition_steps=4)
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    )
    state = TrainState.create(apply_fn=apply_fn, params=params(), tx=tx)
    for _ in range(2):
        state = state.apply_gradients(grads=grads_for(state.params))
    # optax keeps the value the last update used: the schedule at count 1.
    assert float(state.opt_state[1].hyperparams["learning_rate"]) == pytest.approx(0.75)
    assert int(state.opt_state[1].count) == 2


def test_frozen_dict_params_stay_frozen():
    state = TrainState.create(
        apply_fn=apply_fn, params=freeze({"params": params()}), tx=optax.sgd(0.1)
    )
    new = state.apply_gradients(grads=grads_for(state.params))
    assert isinstance(new.params, FrozenDict)


def test_overwrite_with_gradient_collection():
    p = {"params": params(), OVERWRITE_WITH_GRADIENT: {"scale": jnp.ones(1)}}
    state = TrainState.create(apply_fn=apply_fn, params=p, tx=optax.sgd(0.1))
    assert_trees_equal(state.opt_state, optax.sgd(0.1).init(params()))
    grads = {"params": grads_for(params()), OVERWRITE_WITH_GRADIENT: {"scale": jnp.full(1, 7.0)}}
    new = state.apply_gradients(grads=grads)
    np.testing.assert_array_equal(new.params[OVERWRITE_WITH_GRADIENT]["scale"], [7.0])
    expected = jax.tree_util.tree_map(lambda v, g: v - 0.1 * g, params(), grads_for(params()))
    assert_trees_equal(new.params["params"], expected)


def test_training_loop_matches_flax_step_for_step():
    """The same MLP, data and Adam loop as the Flax golden run; losses agree every step."""
    expected = json.loads((GOLDEN / "training_losses.json").read_text())["losses"]
    losses = run_training(nn, TrainState)
    assert len(losses) == len(expected)
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    assert losses[-1] < 0.2 * losses[0]
