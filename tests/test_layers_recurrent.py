"""RNN and Bidirectional against their cells stepped by hand in a Python loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minilinen as nn
from minilinen.errors import LayerConfigError, RngStreamMissingError


def data(*shape, seed=0):
    return jnp.asarray(np.random.RandomState(seed).standard_normal(shape), jnp.float32)


def step_by_hand(cell, params, carry, xs):
    """Applies ``cell`` to each time step of ``xs`` (batch, time, features) in turn."""
    outs, carries = [], []
    for t in range(xs.shape[1]):
        carry, y = cell.apply({"params": params}, carry, xs[:, t])
        outs.append(y)
        carries.append(carry)
    return carry, jnp.stack(outs, axis=1), carries


def test_rnn_over_lstm_cell_equals_the_cell_stepped_by_hand():
    x = data(2, 6, 3)
    rnn = nn.RNN(nn.LSTMCell(4), return_carry=True)
    variables = rnn.init(jax.random.key(0), x)
    carry, ys = rnn.apply(variables, x)

    cell = nn.LSTMCell(4)
    params = variables["params"]["cell"]
    # The cell's own init makes the same parameters as the RNN's 'cell' scope.
    own = cell.init(
        jax.random.key(0), cell.initialize_carry(jax.random.key(1), x[:, 0].shape), x[:, 0]
    )
    assert set(own["params"]) == set(params)
    start = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
    want_carry, want_ys, _ = step_by_hand(cell, params, start, x)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-6, atol=1e-7)
    for a, b in zip(carry, want_carry):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_rnn_seq_lengths_return_each_sequences_last_real_carry():
    x = data(3, 5, 2, seed=1)
    lengths = jnp.asarray([2, 5, 3])
    rnn = nn.RNN(nn.GRUCell(3))
    variables = rnn.init(jax.random.key(0), x)
    carry, ys = rnn.apply(variables, x, seq_lengths=lengths, return_carry=True)

    cell = nn.GRUCell(3)
    start = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
    _, want_ys, carries = step_by_hand(cell, variables["params"]["cell"], start, x)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-6, atol=1e-7)
    for i, n in enumerate([2, 5, 3]):
        np.testing.assert_allclose(carry[i], carries[n - 1][i], rtol=1e-6, atol=1e-7)


def test_rnn_reverse_keep_order_runs_each_sequence_backwards():
    x = data(2, 4, 3, seed=2)
    lengths = jnp.asarray([4, 2])
    rnn = nn.RNN(nn.SimpleCell(2), reverse=True, keep_order=True)
    variables = rnn.init(jax.random.key(0), x)
    ys = rnn.apply(variables, x, seq_lengths=lengths)

    cell = nn.SimpleCell(2)
    params = variables["params"]["cell"]
    for i, n in enumerate([4, 2]):
        seq = x[i : i + 1, :n][:, ::-1]
        start = cell.initialize_carry(jax.random.key(0), seq[:, 0].shape)
        _, want, _ = step_by_hand(cell, params, start, seq)
        np.testing.assert_allclose(ys[i, :n], want[0, ::-1], rtol=1e-6, atol=1e-7)


def test_rnn_time_major_with_initial_carry_under_jit_and_grad():
    x = data(5, 2, 3, seed=3)
    rnn = nn.RNN(nn.OptimizedLSTMCell(4), time_major=True)
    carry0 = (data(2, 4, seed=4), data(2, 4, seed=5))
    variables = rnn.init(jax.random.key(0), x, initial_carry=carry0)

    @jax.jit
    def loss(params):
        return jnp.sum(rnn.apply({"params": params}, x, initial_carry=carry0) ** 2)

    cell = nn.OptimizedLSTMCell(4)
    params = variables["params"]
    _, want, _ = step_by_hand(cell, params["cell"], carry0, jnp.swapaxes(x, 0, 1))
    np.testing.assert_allclose(loss(params), jnp.sum(want**2), rtol=1e-5)
    grads = jax.grad(loss)(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("merge", [None, jnp.add])
def test_bidirectional_merges_a_forward_and_a_backward_pass(merge):
    x = data(2, 4, 3, seed=6)
    kwargs = {} if merge is None else {"merge_fn": merge}
    bi = nn.Bidirectional(nn.RNN(nn.LSTMCell(2)), nn.RNN(nn.GRUCell(2)), **kwargs)
    variables = bi.init(jax.random.key(0), x)
    assert list(variables["params"]) == ["forward_rnn", "backward_rnn"]
    ys = bi.apply(variables, x)

    fwd = nn.RNN(nn.LSTMCell(2)).apply({"params": variables["params"]["forward_rnn"]}, x)
    bwd = nn.RNN(nn.GRUCell(2), reverse=True, keep_order=True).apply(
        {"params": variables["params"]["backward_rnn"]}, x
    )
    want = jnp.concatenate([fwd, bwd], -1) if merge is None else fwd + bwd
    np.testing.assert_allclose(ys, want, rtol=1e-6, atol=1e-7)


def test_cells_initialize_carry_from_the_input_shape():
    shape = (3, 7, 5)
    c, h = nn.LSTMCell(4).initialize_carry(jax.random.key(0), shape)
    assert c.shape == h.shape == (3, 7, 4)
    assert nn.GRUCell(2).initialize_carry(jax.random.key(0), shape).shape == (3, 7, 2)
    ones = nn.SimpleCell(2, carry_init=jax.nn.initializers.ones)
    np.testing.assert_array_equal(ones.initialize_carry(jax.random.key(0), (4,)), np.ones(2))


class MaskCell(nn.RNNCellBase):
    """Outputs its dropout mask of a ones input, sows it and counts its steps in 'state'."""

    features: int = 8

    @nn.compact
    def __call__(self, carry, x):
        mask = nn.Dropout(0.5, deterministic=False)(jnp.ones(x.shape[:-1] + (self.features,)))
        self.sow("intermediates", "mask", mask)
        if self.is_mutable_collection("state"):
            steps = self.variable("state", "steps", jnp.zeros, (), jnp.int32)
            steps.value += 1
        return carry, mask

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(())

    @property
    def num_feature_axes(self):
        return 1


@pytest.mark.parametrize("split", [True, False])
def test_rnn_split_rngs_draws_a_new_dropout_mask_each_step_or_repeats_one(split):
    rnn = nn.RNN(MaskCell(), split_rngs={"params": False, "dropout": split})
    x = data(2, 5, 1)
    masks = rnn.apply({}, x, rngs={"dropout": jax.random.key(0)})
    assert masks.shape == (2, 5, 8)
    steps_alike = [bool(jnp.array_equal(masks[:, 0], masks[:, t])) for t in range(1, 5)]
    assert steps_alike == [not split] * 4


def test_rnn_passes_only_the_rng_streams_split_rngs_names():
    # As in Flax: a stream split_rngs does not name does not reach the steps.
    with pytest.raises(RngStreamMissingError, match="dropout"):
        nn.RNN(MaskCell()).apply({}, data(2, 5, 1), rngs={"dropout": jax.random.key(0)})


@pytest.mark.parametrize("time_major", [False, True])
def test_rnn_variable_axes_stacks_each_steps_sown_value_on_its_axis(time_major):
    axis = 0 if time_major else 1
    rnn = nn.RNN(
        MaskCell(),
        variable_axes={"intermediates": axis},
        split_rngs={"dropout": True},
        time_major=time_major,
    )
    x = data(5, 2, 1) if time_major else data(2, 5, 1)
    masks, state = rnn.apply({}, x, rngs={"dropout": jax.random.key(1)}, mutable=["intermediates"])
    (sown,) = state["intermediates"]["cell"]["mask"]
    np.testing.assert_array_equal(sown, masks)


def test_rnn_variable_carry_threads_a_collection_through_the_steps():
    rnn = nn.RNN(MaskCell(), variable_carry="state", split_rngs={"dropout": True})
    state = {"cell": {"steps": jnp.asarray(3, jnp.int32)}}
    _, out = rnn.apply(
        {"state": state}, data(2, 5, 1), rngs={"dropout": jax.random.key(2)}, mutable=["state"]
    )
    assert int(out["state"]["cell"]["steps"]) == 3 + 5


def test_rnn_per_step_params_give_each_step_its_own_cell():
    rnn = nn.RNN(
        nn.SimpleCell(3),
        variable_axes={"params": 0},
        variable_broadcast=False,
        split_rngs={"params": True},
        return_carry=True,
    )
    x = data(2, 4, 2)
    variables = rnn.init(jax.random.key(0), x)
    kernels = variables["params"]["cell"]["i"]["kernel"]
    assert kernels.shape == (4, 2, 3)
    assert not np.allclose(kernels[0], kernels[1])  # a split 'params' stream per step
    carry, ys = rnn.apply(variables, x)
    cell, h = nn.SimpleCell(3), jnp.zeros((2, 3))
    for t in range(4):
        step_params = jax.tree_util.tree_map(lambda p, t=t: p[t], variables["params"]["cell"])
        h, y = cell.apply({"params": step_params}, h, x[:, t])
        np.testing.assert_allclose(ys[:, t], y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(carry, h, rtol=1e-6, atol=1e-7)


def test_rnn_unroll_computes_what_the_rolled_loop_does():
    x, lengths = data(3, 7, 2), jnp.asarray([7, 2, 5])
    rolled = nn.RNN(nn.GRUCell(4), return_carry=True)
    variables = rolled.init(jax.random.key(0), x)
    want = rolled.apply(variables, x, seq_lengths=lengths)
    got = nn.RNN(nn.GRUCell(4), return_carry=True, unroll=3).apply(
        variables, x, seq_lengths=lengths
    )
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_cell_without_initialize_carry_says_what_is_missing():
    class Incomplete(nn.RNNCellBase):
        pass

    with pytest.raises(LayerConfigError, match="initialize_carry"):
        Incomplete().initialize_carry(jax.random.PRNGKey(0), (2, 3))
    with pytest.raises(LayerConfigError, match="num_feature_axes"):
        _ = Incomplete().num_feature_axes


@pytest.mark.parametrize(
    "cell",
    [nn.LSTMCell(3), nn.OptimizedLSTMCell(3), nn.GRUCell(3), nn.MGUCell(3), nn.SimpleCell(3)],
    ids=lambda c: type(c).__name__,
)
def test_cells_run_with_rank_promotion_raising(cell):
    # Flax's test suite runs with JAX_NUMPY_RANK_PROMOTION=raise; no implicit broadcasts.
    x = data(2, 4)
    carry = cell.initialize_carry(jax.random.key(1), x.shape)
    with jax.numpy_rank_promotion("raise"):
        variables = cell.init(jax.random.key(0), carry, x)
        cell.apply(variables, carry, x)


def test_conv_lstm_carry_keeps_the_spatial_axes():
    cell = nn.ConvLSTMCell(4, (3, 3))
    assert cell.num_feature_axes == 3
    c, h = cell.initialize_carry(jax.random.key(0), (2, 5, 6, 3))
    assert c.shape == h.shape == (2, 5, 6, 4)
    ys = nn.RNN(cell).apply(
        nn.RNN(cell).init(jax.random.key(1), data(2, 7, 5, 6, 3)), data(2, 7, 5, 6, 3)
    )
    assert ys.shape == (2, 7, 5, 6, 4)
