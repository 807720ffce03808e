"""JAX's own transforms over ``init``/``apply``: jit, grad, vmap and lax.scan.

Each transformed call is checked against the same computation without the
transform (eager ``apply``, a Python loop, or the hand-written JAX function).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import minilinen as nn
from minilinen.core import unfreeze

normal = jax.nn.initializers.normal(0.5)


class Linear(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        k = self.param("kernel", jax.nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        return x @ k + self.param("bias", normal, (self.features,))


class RunningMean(nn.Module):
    momentum: float = 0.9
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x):
        ra = self.variable("batch_stats", "mean", jnp.zeros, x.shape[-1:])
        mean = x.mean(0) if self.axis_name is None else lax.pmean(x, self.axis_name)
        if self.is_mutable_collection("batch_stats") and not self.is_initializing():
            ra.value = self.momentum * ra.value + (1.0 - self.momentum) * mean
        return x - ra.value


class Dropout(nn.Module):
    rate: float = 0.5

    @nn.compact
    def __call__(self, x, train: bool):
        if not train:
            return x
        keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.rate, x.shape)
        return jnp.where(keep, x / (1.0 - self.rate), 0.0)


class MLP(nn.Module):
    hidden: int = 8
    out: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.tanh(Linear(self.hidden)(x))
        x = Dropout()(RunningMean()(x), train)
        return Linear(self.out)(x)


class Tied(nn.Module):
    """A setup-defined layer used twice: its gradient sums both uses."""

    def setup(self):
        self.shared = Linear(4)
        self.head = Linear(1)

    def __call__(self, x):
        return self.head(jnp.tanh(self.shared(jnp.tanh(self.shared(x)))))


def assert_trees_close(a, b, rtol: float = 1e-6, atol: float = 1e-6) -> None:
    """Same tree structure and leaves equal to float32 precision."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def mlp():
    x = jnp.sin(jnp.arange(24.0).reshape(6, 4))
    model = MLP()
    variables = model.init(jax.random.PRNGKey(0), x)
    return model, variables, x


def test_jit_apply_matches_eager(mlp):
    model, variables, x = mlp
    assert_trees_close(jax.jit(model.apply)(variables, x), model.apply(variables, x))


def test_jit_apply_with_rngs_and_mutable_matches_eager(mlp):
    model, variables, x = mlp
    run = partial(model.apply, train=True, mutable=["batch_stats"])
    rngs = {"dropout": jax.random.PRNGKey(7)}
    out, state = jax.jit(run)(variables, x, rngs=rngs)
    want_out, want_state = run(variables, x, rngs=rngs)
    assert_trees_close(out, want_out)
    assert_trees_close(state, want_state)
    assert not np.allclose(state["batch_stats"]["RunningMean_0"]["mean"], 0.0)


def test_jit_init_matches_eager(mlp):
    model, variables, x = mlp
    assert_trees_close(jax.jit(model.init)(jax.random.PRNGKey(0), x), variables)


def test_grad_through_apply_matches_hand_written_jax(mlp):
    model, variables, x = mlp
    params, stats = variables["params"], variables["batch_stats"]
    y = jnp.cos(jnp.arange(18.0).reshape(6, 3))

    def loss(params):
        pred = model.apply({"params": params, "batch_stats": stats}, x)
        return jnp.mean((pred - y) ** 2)

    def hand_written(params):
        p0, p1 = params["Linear_0"], params["Linear_1"]
        h = jnp.tanh(x @ p0["kernel"] + p0["bias"]) - stats["RunningMean_0"]["mean"]
        return jnp.mean((h @ p1["kernel"] + p1["bias"] - y) ** 2)

    want_value, want_grads = jax.value_and_grad(hand_written)(params)
    value, grads = jax.value_and_grad(loss)(params)
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    assert_trees_close(grads, want_grads)
    assert_trees_close(jax.jit(jax.grad(loss))(params), want_grads)


def test_grad_of_shared_module_sums_both_uses():
    x = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    model = Tied()
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    assert list(params) == ["shared", "head"]

    def loss(params):
        return jnp.sum(model.apply({"params": params}, x) ** 2)

    def hand_written(params):
        s, h = params["shared"], params["head"]
        z = jnp.tanh(jnp.tanh(x @ s["kernel"] + s["bias"]) @ s["kernel"] + s["bias"])
        return jnp.sum((z @ h["kernel"] + h["bias"]) ** 2)

    assert_trees_close(jax.grad(loss)(params), jax.grad(hand_written)(params))


def test_grad_with_mutable_state_as_aux(mlp):
    model, variables, x = mlp
    params = variables["params"]

    def loss(params):
        out, state = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            mutable=["batch_stats"],
        )
        return jnp.sum(out), state

    (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    eager_out, eager_state = model.apply(variables, x, mutable=["batch_stats"])
    np.testing.assert_allclose(value, jnp.sum(eager_out), rtol=1e-6)
    assert_trees_close(state, eager_state)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)


def test_vmap_over_examples_matches_loop(mlp):
    model, variables, x = mlp
    batched = jax.vmap(model.apply, in_axes=(None, 0))(variables, x[:, None, :])
    looped = jnp.stack([model.apply(variables, x[i : i + 1]) for i in range(x.shape[0])])
    assert_trees_close(batched, looped)


def test_vmap_over_init_keys_makes_an_ensemble(mlp):
    model, _, x = mlp
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    ensemble = jax.jit(jax.vmap(model.init, in_axes=(0, None)))(keys, x)
    members = [model.init(k, x) for k in keys]
    assert_trees_close(ensemble, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *members))

    outs = jax.vmap(model.apply, in_axes=(0, None))(ensemble, x)
    want = jnp.stack([model.apply(m, x) for m in members])
    assert_trees_close(outs, want)


def test_vmap_with_axis_name_syncs_batch_statistics():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return RunningMean(momentum=0.5, axis_name="batch")(Linear(3)(x))

    x = jnp.sin(jnp.arange(15.0)).reshape(5, 3)
    model = Net()
    variables = jax.vmap(model.init, in_axes=(None, 0), out_axes=None, axis_name="batch")(
        jax.random.PRNGKey(2), x
    )

    def one(v, xi):
        return model.apply(v, xi, mutable=["batch_stats"])

    out, state = jax.vmap(one, in_axes=(None, 0), out_axes=(0, None), axis_name="batch")(
        variables, x
    )
    p = variables["params"]["Linear_0"]
    h = x @ p["kernel"] + p["bias"]
    want_mean = 0.5 * h.mean(0)
    np.testing.assert_allclose(state["batch_stats"]["RunningMean_0"]["mean"], want_mean, rtol=1e-6)
    np.testing.assert_allclose(out, h - want_mean, rtol=1e-5, atol=1e-6)


class Cell(nn.Module):
    features: int = 5

    @nn.compact
    def __call__(self, h, x):
        return jnp.tanh(Linear(self.features, name="hh")(h) + Linear(self.features, name="xh")(x))


def test_apply_inside_scan_matches_python_loop():
    xs = jnp.sin(jnp.arange(7 * 2 * 3.0)).reshape(7, 2, 3)
    h0 = jnp.zeros((2, 5))
    cell = Cell()
    variables = cell.init(jax.random.PRNGKey(4), h0, xs[0])

    def step(h, x):
        h = cell.apply(variables, h, x)
        return h, h

    h_last, hs = lax.scan(step, h0, xs)
    h, looped = h0, []
    for x in xs:
        h = cell.apply(variables, h, x)
        looped.append(h)
    assert_trees_close(hs, jnp.stack(looped))
    assert_trees_close(h_last, h)
    assert_trees_close(jax.jit(lambda v, h, xs: lax.scan(step, h, xs))(variables, h0, xs)[0], h)


def test_scan_carrying_mutable_state_matches_python_loop(mlp):
    model, variables, x = mlp
    xs = jnp.stack([x * (1.0 + 0.1 * i) for i in range(4)])
    keys = jax.random.split(jax.random.PRNGKey(5), 4)

    def step(stats, inputs):
        xi, key = inputs
        out, new = model.apply(
            {"params": variables["params"], **stats},
            xi,
            train=True,
            rngs={"dropout": key},
            mutable=["batch_stats"],
        )
        # A scan carry keeps one pytree type: plain dicts in, plain dicts out.
        return unfreeze(new), out

    stats0 = unfreeze({"batch_stats": variables["batch_stats"]})
    final, outs = lax.scan(step, stats0, (xs, keys))
    stats, looped = stats0, []
    for xi, key in zip(xs, keys):
        stats, out = step(stats, (xi, key))
        looped.append(out)
    assert_trees_close(outs, jnp.stack(looped))
    assert_trees_close(final, stats)
