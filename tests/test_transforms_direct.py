"""The transforms that take the module as an argument (nn.vjp, nn.jvp, nn.grad,
nn.value_and_grad, nn.custom_vjp, nn.cond, nn.switch, nn.while_loop) and the scope
helpers nn.share_scope and nn.compact_name_scope, as a user meets them: against the
same computation written by hand with JAX, and the errors for misuse."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minilinen as nn
from minilinen import errors, transforms

X = jnp.sin(jnp.arange(8, dtype=jnp.float32)).reshape(2, 4)


def dense(params, x):
    return x @ params["kernel"] + params["bias"]


def dense_params(model, *args, **kwargs):
    return model.init(jax.random.PRNGKey(0), *args, **kwargs)["params"]


def close(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_exported_from_nn_and_transforms():
    for name in ["cond", "switch", "while_loop", "vjp", "jvp", "grad", "value_and_grad"]:
        assert getattr(nn, name) is getattr(transforms, name)
    assert callable(nn.custom_vjp) and callable(nn.share_scope) and callable(nn.compact_name_scope)


# --- autodiff ----------------------------------------------------------------


class VjpModel(nn.Module):
    @nn.compact
    def __call__(self, x, y_t):
        y, bwd = nn.vjp(lambda mdl, x: jnp.tanh(mdl(x)), nn.Dense(3), x)
        params_t, x_t = bwd(y_t)
        return y, params_t, x_t


def test_vjp_equals_jax_vjp_of_the_hand_written_function():
    y_t = jnp.cos(jnp.arange(6.0)).reshape(2, 3)
    params = dense_params(VjpModel(), X, y_t)
    y, params_t, x_t = VjpModel().apply({"params": params}, X, y_t)
    p = params["Dense_0"]
    want_y, bwd = jax.vjp(lambda p, x: jnp.tanh(dense(p, x)), p, X)
    want_p, want_x = bwd(y_t)
    close(y, want_y)
    close(params_t["params"], want_p)  # cotangents keyed by collection, as in Flax
    close(x_t, want_x)


class GradModel(nn.Module):
    @nn.compact
    def __call__(self, x):
        loss = lambda mdl, x: jnp.sum(jnp.sin(mdl(x)))  # noqa: E731
        (x_t,) = nn.grad(loss, nn.Dense(3), x)
        value, (again,) = nn.value_and_grad(loss, nn.Dense(3, name="other"), x)
        (with_aux, aux) = nn.grad(
            lambda mdl, x: (loss(mdl, x), mdl(x)), nn.Dense(3), x, has_aux=True
        )
        return x_t, value, again, with_aux, aux


def test_grad_and_value_and_grad_equal_jax_grad():
    params = dense_params(GradModel(), X)
    x_t, value, again, with_aux, aux = GradModel().apply({"params": params}, X)
    loss = lambda p, x: jnp.sum(jnp.sin(dense(p, x)))  # noqa: E731
    close(x_t, jax.grad(loss, argnums=1)(params["Dense_0"], X))
    close(value, loss(params["other"], X))
    close(again, jax.grad(loss, argnums=1)(params["other"], X))
    close(with_aux, jax.grad(loss, argnums=1)(params["Dense_1"], X))
    close(aux, dense(params["Dense_1"], X))


class JvpModel(nn.Module):
    @nn.compact
    def __call__(self, x):
        layer = nn.Dense(3)
        layer(x)  # create the params first, so they can carry tangents
        tangents = jax.tree_util.tree_map(jnp.ones_like, layer.variables["params"])
        return nn.jvp(lambda mdl, x: jnp.tanh(mdl(x)), layer, (x,), (x * 2,), {"params": tangents})


def test_jvp_equals_jax_jvp_with_variable_tangents():
    params = dense_params(JvpModel(), X)
    y, y_t = JvpModel().apply({"params": params}, X)
    p = params["Dense_0"]
    ones = jax.tree_util.tree_map(jnp.ones_like, p)
    want_y, want_t = jax.jvp(lambda p, x: jnp.tanh(dense(p, x)), (p, X), (ones, X * 2))
    close(y, want_y)
    close(y_t, want_t)


class SignGrad(nn.Module):
    @nn.compact
    def __call__(self, x):
        f = lambda mdl, x: mdl(x)  # noqa: E731

        def bwd(vjp_fn, y_t):
            params_t, x_t = vjp_fn(y_t)
            return jax.tree_util.tree_map(jnp.sign, params_t), x_t

        return nn.custom_vjp(f, lambda mdl, x: nn.vjp(f, mdl, x), bwd)(nn.Dense(3), x)


def test_custom_vjp_gives_the_custom_gradient_and_the_plain_value():
    params = dense_params(SignGrad(), X)
    y = SignGrad().apply({"params": params}, X)
    close(y, dense(params["Dense_0"], X))
    loss = lambda p: jnp.sum(SignGrad().apply({"params": p}, X) * 3.0)  # noqa: E731
    grads = jax.grad(loss)(params)["Dense_0"]
    true = jax.grad(lambda p: jnp.sum(dense(p, X) * 3.0))(params["Dense_0"])
    close(grads, jax.tree_util.tree_map(jnp.sign, true))


class Scaled(nn.Module):
    @nn.compact
    def __call__(self, x):
        def f(mdl, x, scale):
            return mdl(x) * scale

        def fwd(mdl, x, scale):
            y, vjp_fn = nn.vjp(lambda m, x: m(x), mdl, x)
            return y * scale, vjp_fn

        def bwd(scale, vjp_fn, y_t):  # the nondiff argument comes first, as in jax.custom_vjp
            return vjp_fn(y_t * scale * 10)

        return nn.custom_vjp(f, fwd, bwd, nondiff_argnums=(2,))(nn.Dense(2), x, 3.0)


def test_custom_vjp_passes_nondiff_arguments_to_the_backward_function():
    params = dense_params(Scaled(), X)
    grads = jax.grad(lambda p: Scaled().apply({"params": p}, X).sum())(params)["Dense_0"]
    close(grads, jax.grad(lambda p: jnp.sum(dense(p, X)) * 30.0)(params["Dense_0"]))


def test_grad_of_a_non_scalar_function_and_reduce_axes_are_refused():
    class NonScalar(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.grad(lambda mdl, x: mdl(x), nn.Dense(3), x)

    with pytest.raises(errors.TransformError, match="scalar"):
        NonScalar().init(jax.random.PRNGKey(0), X)

    class Reduce(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.vjp(lambda mdl, x: mdl(x), nn.Dense(3), x, reduce_axes=("batch",))

    with pytest.raises(NotImplementedError, match="reduce_axes"):
        Reduce().init(jax.random.PRNGKey(0), X)


def test_the_module_argument_must_be_a_bound_module():
    class Wrong(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.grad(lambda mdl, x: x.sum(), x, x)

    with pytest.raises(errors.TransformError, match="lifts a Module"):
        Wrong().init(jax.random.PRNGKey(0), X)
    with pytest.raises(errors.UnboundModuleError):
        nn.grad(lambda mdl, x: x.sum(), nn.Dense(3), X)


# --- control flow --------------------------------------------------------------


class Counted(nn.Module):
    @nn.compact
    def __call__(self, x, pred):
        self.variable("state", "true_count", lambda: 0)
        self.variable("state", "false_count", lambda: 0)

        def true_fn(mdl, x):
            mdl.variable("state", "true_count").value += 1
            return nn.Dense(2, name="dense")(x)

        def false_fn(mdl, x):
            mdl.variable("state", "false_count").value += 1
            return -nn.Dense(2, name="dense")(x)

        return nn.cond(pred, true_fn, false_fn, self, x)


@pytest.mark.parametrize("pred", [True, False])
def test_cond_runs_one_branch_and_updates_its_state(pred):
    variables = Counted().init(jax.random.PRNGKey(0), X, True)
    assert set(variables["params"]) == {"dense"}  # both branches share the one Dense
    apply = jax.jit(lambda v, x, p: Counted().apply(v, x, p, mutable=["state"]))
    y, state = apply(variables, X, jnp.asarray(pred))
    sign = 1.0 if pred else -1.0
    close(y, sign * dense(variables["params"]["dense"], X))
    # init ran the true branch once; apply adds one to the branch it takes
    assert int(state["state"]["true_count"]) == 1 + int(pred)
    assert int(state["state"]["false_count"]) == int(not pred)


class Heads(nn.Module):
    @nn.compact
    def __call__(self, x, index):
        branches = [lambda mdl, x, k=k: nn.Dense(2, name="head")(x) * k for k in (1.0, 2.0, 3.0)]
        return nn.switch(index, branches, self, x)


@pytest.mark.parametrize("index,scale", [(0, 1.0), (2, 3.0), (7, 3.0)])
def test_switch_picks_the_branch_and_clamps_like_lax_switch(index, scale):
    params = dense_params(Heads(), X, 0)
    y = Heads().apply({"params": params}, X, jnp.asarray(index))
    close(y, scale * dense(params["head"], X))


class Loop(nn.Module):
    split: bool

    @nn.compact
    def __call__(self, x):
        def body(mdl, c):
            steps = mdl.variable("state", "steps")
            steps.value += 1
            x, total, first = c
            draw = jax.random.uniform(mdl.make_rng("noise"))
            first = jnp.where(steps.value == 1, draw, first)
            return nn.Dense(4, name="dense")(x), total + draw, first

        def keep_going(mdl, c):
            return mdl.variables["state"]["steps"] < 3

        if self.is_initializing():
            self.variable("state", "steps", lambda: jnp.array(0))
            return nn.Dense(4, name="dense")(x), 0.0, 0.0
        init = (x, jnp.float32(0.0), jnp.float32(0.0))
        split_rngs = {"noise": self.split}
        return nn.while_loop(keep_going, body, self, init, "state", split_rngs=split_rngs)


@pytest.mark.parametrize("split", [False, True])
def test_while_loop_carries_state_and_splits_rngs_per_iteration(split):
    variables = Loop(split).init(jax.random.PRNGKey(0), X)
    (y, total, first), state = Loop(split).apply(
        variables, X, rngs={"noise": jax.random.PRNGKey(3)}, mutable=["state"]
    )
    assert int(state["state"]["steps"]) == 3
    want = X
    for _ in range(3):
        want = dense(variables["params"]["dense"], want)
    close(y, want)
    # Without splitting every iteration draws the same key; with it, each its own.
    assert np.isclose(total, 3 * first) != split


# --- share_scope and compact_name_scope -----------------------------------------


class LoRA(nn.Module):
    base: nn.Module

    def setup(self):
        nn.share_scope(self, self.base)

    @nn.compact
    def __call__(self, x):
        a = self.param("A", nn.initializers.ones, (x.shape[-1], 2))
        b = self.param("B", nn.initializers.ones, (2, 3))
        return self.base(x) + x @ a @ b


class WithLoRA(nn.Module):
    @nn.compact
    def __call__(self, x):
        return LoRA(nn.Dense(3))(x)


def test_share_scope_puts_both_modules_variables_in_one_place():
    params = dense_params(WithLoRA(), X)
    assert list(params) == ["Dense_0"]
    assert list(params["Dense_0"]) == ["A", "B", "kernel", "bias"]
    y = WithLoRA().apply({"params": params}, X)
    close(y, dense(params["Dense_0"], X) + X @ jnp.ones((4, 2)) @ jnp.ones((2, 3)))


def test_share_scope_needs_bound_modules():
    with pytest.raises(errors.UnboundModuleError, match="share_scope"):
        nn.share_scope(nn.Dense(3), nn.Dense(3))


class Haiku(nn.Module):
    @nn.compact_name_scope
    def up(self, x):
        return nn.Dense(3)(x)

    @nn.compact_name_scope
    def down(self, x):
        return nn.Dense(4)(x)

    def __call__(self, x):
        return self.down(self.up(x)) + self.down(self.up(x))


def test_compact_name_scope_names_submodules_after_the_method():
    params = dense_params(Haiku(), X)
    assert jax.tree_util.tree_map(jnp.shape, params) == {
        "up": {"Dense_0": {"kernel": (4, 3), "bias": (3,)}},
        "down": {"Dense_0": {"kernel": (3, 4), "bias": (4,)}},
    }
    up = Haiku().apply({"params": params}, X, method="up")
    close(up, dense(params["up"]["Dense_0"], X))
    y = Haiku().apply({"params": params}, X)
    close(y, 2 * dense(params["down"]["Dense_0"], up))


class OuterField(nn.Module):
    """value_and_grad over a module whose field is a Dense bound in its parent."""

    bar: nn.Module

    @nn.compact
    def __call__(self, x):
        loss = lambda mdl, x: jnp.sum(mdl.bar(nn.Dense(4)(x)) ** 2)  # noqa: E731
        return nn.value_and_grad(loss, self, x)


class HoldsOuter(nn.Module):
    @nn.compact
    def __call__(self, x):
        return OuterField(nn.Dense(4))(x)


def test_value_and_grad_reaches_a_module_bound_elsewhere():
    params = dense_params(HoldsOuter(), X)
    assert set(params) == {"Dense_0", "OuterField_0"}
    value, (x_t,) = HoldsOuter().apply({"params": params}, X)
    loss = lambda x: jnp.sum(
        dense(params["Dense_0"], dense(params["OuterField_0"]["Dense_0"], x)) ** 2
    )  # noqa: E731
    close(value, loss(X))
    close(x_t, jax.grad(loss)(X))


class TwoBranches(nn.Module):
    @nn.compact
    def __call__(self, x, pred):
        y = nn.cond(pred, lambda m, x: nn.Dense(3)(x), lambda m, x: -nn.Dense(3)(x), self, x)
        return nn.Dense(2)(y)


@pytest.mark.parametrize("pred", [True, False])
def test_cond_branches_name_their_submodules_alike(pred):
    # Each branch is traced once from the same naming state (as in Flax): both make
    # Dense_0, and the Dense after the cond is Dense_1.
    params = dense_params(TwoBranches(), X, True)
    assert jax.tree_util.tree_map(jnp.shape, params) == {
        "Dense_0": {"kernel": (4, 3), "bias": (3,)},
        "Dense_1": {"kernel": (3, 2), "bias": (2,)},
    }
    inner = dense(params["Dense_0"], X)
    close(
        TwoBranches().apply({"params": params}, X, pred),
        dense(params["Dense_1"], inner if pred else -inner),
    )


def test_add_metadata_axis_records_the_axis_outside_and_strips_it_inside():
    seen = {}

    class Foo(nn.Module):
        @nn.compact
        def __call__(self, x):
            init = nn.with_partitioning(nn.initializers.lecun_normal(), ("foo", "bar"))
            out = nn.Dense(4, kernel_init=init, use_bias=False, name="dense")(x)
            seen["names"] = self.variables["params"]["dense"]["kernel"].names
            return out

    class Test(nn.Module):
        @functools.partial(
            nn.add_metadata_axis,
            variable_axes={"params": 0},
            metadata_params={nn.PARTITION_NAME: "baz"},
        )
        @nn.compact
        def __call__(self, x):
            return Foo(name="foo")(x)

    x = jnp.ones((4, 4), jnp.float32)
    variables = Test().init(jax.random.key(0), x)
    box = variables["params"]["foo"]["dense"]["kernel"]
    assert box.names == ("baz", "foo", "bar") and box.value.shape == (4, 4)
    assert seen["names"] == ("foo", "bar")  # inside, the axis is stripped again
    y = Test().apply(variables, x)
    assert seen["names"] == ("foo", "bar")
    np.testing.assert_allclose(y, x @ box.value, rtol=1e-6)
