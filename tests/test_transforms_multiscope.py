"""Lifted transforms over more than their own module (Flax's multi-scope lifting),
nn.jit's tracing and arguments, and compact naming across a transform boundary."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minilinen as nn


def _shapes(variables):
    return jax.tree_util.tree_map(jnp.shape, nn.core.unfreeze(variables))


class OuterDense(nn.Module):
    @nn.jit
    @nn.compact
    def __call__(self, x):
        return nn.Dense(5)(x)


class VmapInner(nn.Module):
    outer_module: nn.Module

    @functools.partial(
        nn.vmap, in_axes=(0,), variable_axes={"params": 0}, split_rngs={"params": True}
    )
    @nn.compact
    def __call__(self, x):
        return self.outer_module(x) + nn.Dense(5)(x)


class TwoInners(nn.Module):
    @nn.compact
    def __call__(self, x):
        outer = OuterDense(name="outer")
        return VmapInner(outer, name="inner1")(x) + VmapInner(outer, name="inner2")(x)


def test_vmap_lifts_an_outer_module_held_in_a_field():
    x = jnp.arange(6.0).reshape((3, 1, 2))
    variables = TwoInners().init(jax.random.PRNGKey(0), x)
    stacked = {"Dense_0": {"bias": (3, 5), "kernel": (3, 2, 5)}}
    # The outer module's parameters stay where it is bound, mapped like the inner ones.
    assert _shapes(variables) == {
        "params": {"outer": stacked, "inner1": stacked, "inner2": stacked}
    }
    p = variables["params"]

    def dense(q, i):
        return x[i] @ q["Dense_0"]["kernel"][i] + q["Dense_0"]["bias"][i]

    expected = jnp.stack(
        [2 * dense(p["outer"], i) + dense(p["inner1"], i) + dense(p["inner2"], i) for i in range(3)]
    )
    np.testing.assert_allclose(TwoInners().apply(variables, x), expected, rtol=1e-6)


def test_a_transformed_module_may_call_a_module_bound_outside_it():
    class Holder(nn.Module):
        inner: nn.Module

        @nn.compact
        def __call__(self, x):
            return self.inner(x)

    class Sharing(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(2)
            return dense(x) - nn.remat(Holder)(dense)(x)

    x = jnp.ones((1, 2))
    variables = Sharing().init(jax.random.PRNGKey(0), x)
    assert _shapes(variables) == {"params": {"Dense_0": {"bias": (2,), "kernel": (2, 2)}}}
    np.testing.assert_array_equal(Sharing().apply(variables, x), jnp.zeros((1, 2)))


def test_scan_over_a_pytree_of_outer_modules_carries_their_state():
    class Step(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            counter = self.variable("counter", "i", jnp.zeros, ())
            counter.value += 1
            return c, nn.Dense(1)(x)

    class Chain(nn.Module):
        steps: dict

        @nn.compact
        def __call__(self, c, x):
            return self.steps["foo"](*self.steps["bar"](c, x))

    steps = {"foo": Step(), "bar": Step()}
    scanned = nn.scan(
        Chain,
        in_axes=0,
        variable_carry="counter",
        variable_broadcast="params",
        split_rngs={"params": False},
    )(steps)
    x = jnp.ones((10, 2))
    variables = Chain(steps).init(jax.random.PRNGKey(0), x, x)
    _, state = scanned.apply(variables, x, x, mutable="counter")
    assert jax.tree_util.tree_map(float, nn.core.unfreeze(state)) == {
        "counter": {"steps_bar": {"i": 11.0}, "steps_foo": {"i": 11.0}}
    }


def test_jit_takes_modules_and_variables_as_arguments():
    class Counter(nn.Module):
        @nn.compact
        def __call__(self):
            v = self.variable("counter", "n", lambda: jnp.zeros(()))
            v.value += 1
            return v.value

    class UsesArgs(nn.Module):
        @nn.jit
        def __call__(self, module, var, x):
            var.value = var.value + x.sum()
            return module() + x

    class Top(nn.Module):
        @nn.compact
        def __call__(self, x):
            var = self.variable("state", "s", lambda: jnp.zeros(()))
            return UsesArgs()(Counter(), var, x)

    y, state = Top().apply({}, jnp.ones((2,)), mutable=True)
    np.testing.assert_array_equal(y, jnp.full((2,), 2.0))
    assert jax.tree_util.tree_map(float, nn.core.unfreeze(state)) == {
        "counter": {"Counter_0": {"n": 1.0}},
        "state": {"s": 2.0},
    }


def test_jit_of_init_with_output():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x)

    class Jitted(Model):
        @nn.jit
        def init_with_output(self, rngs, *args, **kwargs):
            return super().init_with_output(rngs, *args, **kwargs)

    x = jnp.ones((2, 3))
    y, variables = Jitted().init_with_output(jax.random.PRNGKey(0), x)
    expected_y, expected = Model().init_with_output(jax.random.PRNGKey(0), x)
    np.testing.assert_array_equal(y, expected_y)
    kernel = variables["params"]["Dense_0"]["kernel"]
    np.testing.assert_array_equal(kernel, expected["params"]["Dense_0"]["kernel"])


@pytest.mark.parametrize("jit_class", [True, False])
def test_jit_traces_equal_sibling_modules_once(jit_class):
    traces = 0

    class Foo(nn.Module):
        key: int

        @nn.compact
        def __call__(self, x):
            nonlocal traces
            traces += 1
            count = self.variable("counts", "count", lambda: 0)
            if not self.is_initializing():
                count.value += 1
            return x

    Jitted = nn.jit(Foo) if jit_class else None
    if not jit_class:

        class Jitted(Foo):
            __call__ = nn.jit(Foo.__call__)

    class Parent(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(3):
                x = Jitted(0)(x)
            return x

    x = jnp.array(1.0)
    counts = Parent().init({}, x)["counts"]
    assert traces == 1
    for step in (1, 2):
        _, updates = Parent().apply({"counts": counts}, x, mutable=["counts"])
        counts = updates["counts"]
        assert traces == 2  # once for init, once for apply; the second apply is cached
        assert [int(c) for c in jax.tree_util.tree_leaves(counts)] == [step] * 3


@pytest.mark.parametrize("retracing_scan", [True, False])
def test_jitted_scan_traces_as_flax(retracing_scan):
    traces = [0, 0]

    class Block(nn.Module):
        def setup(self):
            self.dense = nn.Dense(4, use_bias=False)

        @nn.jit
        def __call__(self, x):
            traces[1] += 1
            return self.dense(x)

    class BlockSequence(nn.Module):
        def setup(self):
            self.blocks = [Block() for _ in range(4)]

        @nn.jit
        def __call__(self, carry, inputs):
            traces[0] += 1
            for block in self.blocks:
                carry = block(carry)
            return carry, inputs

    class Transformer(nn.Module):
        def setup(self):
            self.scan = nn.scan(
                BlockSequence,
                variable_axes={"params": 0},
                split_rngs={"params": False},
                length=4,
                check_constancy_invariants=retracing_scan,
            )()

        def __call__(self, inputs):
            return self.scan(jnp.zeros_like(inputs), inputs)

    variables = Transformer().init(jax.random.PRNGKey(0), jnp.ones((4, 4)))
    # Flax's counts: one trace per trace of the scan body; the four equal blocks share one.
    assert traces == ([2, 2] if retracing_scan else [1, 1])
    assert _shapes(variables)["params"]["scan"]["blocks_3"]["dense"]["kernel"] == (4, 4, 4)


def test_scan_body_names_submodules_as_flax():
    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x)

    class Model(nn.Module):
        @functools.partial(
            nn.scan, variable_broadcast="params", split_rngs={"params": False}, length=3
        )
        @nn.compact
        def body(self, c, x):
            return MLP()(c), x

        @nn.compact
        def __call__(self, c, xs):
            c = MLP()(c)
            c, _ = self.body(c, xs)
            return MLP()(c)

    class Alone(nn.Module):
        @functools.partial(
            nn.scan, variable_broadcast="params", split_rngs={"params": False}, length=3
        )
        @nn.compact
        def __call__(self, c, x):
            return MLP()(c), x

    c, xs = jnp.ones((2,)), jnp.ones((3, 2))
    # The body is traced twice (broadcast variables first); both traces name alike.
    assert sorted(Model().init(jax.random.PRNGKey(0), c, xs)["params"]) == [
        "MLP_0",
        "MLP_1",
        "MLP_2",
    ]
    assert sorted(Alone().init(jax.random.PRNGKey(0), c, xs)["params"]) == ["MLP_0"]


def test_a_submodule_passed_to_a_lifted_method_of_its_parent_is_lifted_once():
    class Accumulate(nn.Module):
        @nn.jit
        @nn.compact
        def __call__(self, x):
            total = self.variable("test", "total", jnp.zeros, x.shape)
            total.value += x
            return total.value

    class Parent(nn.Module):
        @nn.jit
        @nn.compact
        def __call__(self, x):
            return self.call_it(x, Accumulate(name="inner"))

        @nn.jit
        def call_it(self, x, inner):
            return inner(x)

    x = jnp.ones((1,))
    variables = Parent().init(jax.random.PRNGKey(0), x)
    for expected in (2.0, 3.0):
        y, variables = Parent().apply(variables, x, mutable=["test"])
        np.testing.assert_array_equal(y, [expected])
        np.testing.assert_array_equal(variables["test"]["inner"]["total"], [expected])


def test_a_setup_submodule_passed_to_a_lifted_helper():
    class Plain(nn.Module):
        def setup(self):
            self.inner = nn.Dense(2)

        def helper(self, x, m):
            return m(x)

        def __call__(self, x):
            return self.helper(x, self.inner)

    class Jitted(Plain):
        helper = nn.jit(Plain.helper)
        __call__ = nn.jit(Plain.__call__)

    x = jnp.ones((2,))
    expected = Plain().init(jax.random.PRNGKey(0), x)
    variables = Jitted().init(jax.random.PRNGKey(0), x)
    assert (
        _shapes(variables)
        == _shapes(expected)
        == {"params": {"inner": {"bias": (2,), "kernel": (2, 2)}}}
    )
    np.testing.assert_array_equal(Jitted().apply(variables, x), Plain().apply(variables, x))


@pytest.mark.parametrize("transform", [nn.jit, nn.remat])
def test_a_submodule_passed_to_a_lifted_method_keeps_its_name_reserved(transform):
    # As in Flax: inside the lifted method, the name of a submodule passed in is taken,
    # for a new submodule (even in a plain method) and for a variable alike.
    class NewSubmodule(nn.Module):
        @transform
        def helper(self, x, m):
            nn.Dense(2, name="a")
            return m(x)

        @nn.compact
        def __call__(self, x):
            return self.helper(x, nn.Dense(2, name="a"))

    class NewParam(nn.Module):
        @transform
        @nn.compact
        def helper(self, x, m):
            self.param("a", nn.initializers.zeros, (2,))
            return m(x)

        @nn.compact
        def __call__(self, x):
            return self.helper(x, nn.Dense(2, name="a"))

    for model in (NewSubmodule(), NewParam()):
        with pytest.raises(nn.errors.NameInUseError, match="'a'"):
            model.init(jax.random.PRNGKey(0), jnp.ones((2,)))


def test_a_lifted_copys_setup_binds_the_reserved_name_of_its_submodule_again():
    # The copy inside the transform runs setup again: its self.inner is the submodule
    # passed in (one set of parameters), not a name clash.
    class Plain(nn.Module):
        def setup(self):
            self.inner = nn.Dense(2)

        def helper(self, x, m):
            return m(x) + self.inner(x)

        def __call__(self, x):
            return self.helper(x, self.inner)

    class Jitted(Plain):
        helper = nn.jit(Plain.helper)

    x = jnp.arange(2.0)
    variables = Jitted().init(jax.random.PRNGKey(0), x)
    assert _shapes(variables) == {"params": {"inner": {"bias": (2,), "kernel": (2, 2)}}}
    np.testing.assert_array_equal(Jitted().apply(variables, x), Plain().apply(variables, x))


def test_jitted_modules_held_in_fields_keep_their_writes():
    # A field module adopted eagerly by its holder is re-adopted inside the holder's
    # nn.jit as given, so its variables land under the field's name (as in Flax).
    class C(nn.Module):
        @nn.jit
        @nn.compact
        def __call__(self, x):
            initialized = self.has_variable("muts", "v")
            v = self.variable("muts", "v", lambda: jnp.zeros_like(x))
            if initialized:
                v.value += x
            return x

    class B(nn.Module):
        c: nn.Module

        @nn.jit
        @nn.compact
        def __call__(self, x):
            C(name="outer_c")(x)
            return self.c(x)

    class A(nn.Module):
        b: nn.Module

        @nn.jit
        @nn.compact
        def __call__(self, x):
            return self.b(x)

    model, x = A(b=B(c=C())), jnp.ones((1,), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    assert set(variables["muts"]["b"]) == {"c", "outer_c"}
    _, new = model.apply(variables, x, mutable=["muts"])
    np.testing.assert_array_equal(new["muts"]["b"]["c"]["v"], [1.0])
    np.testing.assert_array_equal(new["muts"]["b"]["outer_c"]["v"], [1.0])
