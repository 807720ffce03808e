"""Lifted transforms as a user meets them: nn.scan, nn.vmap, nn.remat, nn.remat_scan,
nn.map_variables and nn.jit over modules, and the errors for misuse."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minilinen as nn
from minilinen import errors
from minilinen.transforms import broadcast, jit, map_variables, remat, remat_scan, scan, vmap


class Block(nn.Module):
    features: int = 4

    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Dense(self.features)(x)) + x


class ScanBlock(nn.Module):
    @nn.compact
    def __call__(self, c, _):
        return Block()(c), None


class Stacked(nn.Module):
    depth: int

    @nn.compact
    def __call__(self, x):
        layers = scan(
            ScanBlock,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            length=self.depth,
        )
        return layers(name="layers")(x, None)[0]


class Unrolled(nn.Module):
    depth: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = Block()(x)
        return x


@pytest.mark.parametrize("depth", [1, 4])
def test_scan_stacks_params_and_equals_the_unrolled_model(depth):
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 4))
    stacked = Stacked(depth).init(jax.random.PRNGKey(0), x)["params"]
    kernel = stacked["layers"]["Block_0"]["Dense_0"]["kernel"]
    bias = stacked["layers"]["Block_0"]["Dense_0"]["bias"]
    assert kernel.shape == (depth, 4, 4) and bias.shape == (depth, 4)
    if depth > 1:  # split rngs: every layer initialized differently
        assert not np.allclose(kernel[0], kernel[1])

    unrolled = {
        f"Block_{i}": {"Dense_0": {"kernel": kernel[i], "bias": bias[i]}} for i in range(depth)
    }
    want = Unrolled(depth).apply({"params": unrolled}, x)
    got = Stacked(depth).apply({"params": stacked}, x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

    loss = lambda p, m: jnp.sum(m.apply({"params": p}, x) ** 2)  # noqa: E731
    g_stacked = jax.grad(loss)(stacked, Stacked(depth))
    g_unrolled = jax.grad(loss)(unrolled, Unrolled(depth))
    np.testing.assert_allclose(
        g_stacked["layers"]["Block_0"]["Dense_0"]["kernel"][depth - 1],
        g_unrolled[f"Block_{depth - 1}"]["Dense_0"]["kernel"],
        rtol=1e-5,
        atol=1e-6,
    )


def test_scan_under_jit_traces_the_body_a_fixed_number_of_times():
    traces = []

    class Counted(nn.Module):
        @nn.compact
        def __call__(self, c, _):
            traces.append(1)
            return Block()(c), None

    class Model(nn.Module):
        depth: int

        @nn.compact
        def __call__(self, x):
            layers = scan(
                Counted, variable_axes={"params": 0}, split_rngs={"params": True}, length=self.depth
            )
            return layers()(x, None)[0]

    x = jnp.ones((2, 4))
    counts = []
    for depth in (2, 16):
        variables = jax.eval_shape(Model(depth).init, jax.random.PRNGKey(0), x)
        traces.clear()
        jax.jit(Model(depth).apply).trace(variables, x)
        counts.append(len(traces))
    # Two traces (broadcast pass, loop body), whatever the depth.
    assert counts == [2, 2]


def test_scan_broadcast_params_are_shared_by_every_iteration():
    class Shared(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            return nn.Dense(3)(c) + x, c.sum()

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, xs):
            loop = scan(Shared, variable_broadcast="params", split_rngs={"params": False})
            return loop(name="loop")(c, xs)

    c, xs = jnp.ones((2, 3)), jnp.ones((5, 2, 3))
    variables = Model().init(jax.random.PRNGKey(0), c, xs)
    assert variables["params"]["loop"]["Dense_0"]["kernel"].shape == (3, 3)
    out, ys = Model().apply(variables, c, xs)
    assert ys.shape == (5,)
    kernel = variables["params"]["loop"]["Dense_0"]["kernel"]
    bias = variables["params"]["loop"]["Dense_0"]["bias"]
    want = c
    for x in xs:
        want = want @ kernel + bias + x
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_scan_broadcast_value_depending_on_the_loop_is_an_error():
    class Leaky(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            self.param("w", lambda key: x.sum())  # a "shared" value made from the input
            return c, None

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, xs):
            return scan(Leaky, variable_broadcast="params", split_rngs={"params": False})()(c, xs)

    with pytest.raises(errors.TransformError, match="depends on the loop"):
        Model().init(jax.random.PRNGKey(0), jnp.ones(2), jnp.ones((3, 2)))


def test_scan_constancy_check_runs_no_side_effects_of_the_loop():
    # The first pass that makes the broadcast params only computes what does not depend
    # on the loop (as in Flax): the callback on the carry runs once per iteration.
    seen = []

    class Step(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            jax.debug.callback(lambda v: seen.append(float(v)), c.sum())
            return nn.Dense(2)(c) + x, None

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, xs):
            return scan(Step, variable_broadcast="params", split_rngs={"params": False})()(c, xs)

    Model().init(jax.random.PRNGKey(0), jnp.ones(2), jnp.ones((3, 2)))
    jax.effects_barrier()
    assert len(seen) == 3 and seen[0] == 2.0


def test_scan_carries_a_collection_and_reverses():
    class Count(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            n = self.variable("counter", "n", jnp.zeros, (), jnp.int32)
            n.value = n.value + 1
            return c + x * n.value, n.value

    class Model(nn.Module):
        reverse: bool

        @nn.compact
        def __call__(self, xs):
            loop = scan(Count, variable_carry="counter", reverse=self.reverse)
            return loop(name="loop")(jnp.zeros(()), xs)

    xs = jnp.array([1.0, 10.0, 100.0])
    start = {"counter": {"loop": {"n": jnp.array(0, jnp.int32)}}}
    (c, ns), state = Model(False).apply(start, xs, mutable="counter")
    assert float(c) == 1 * 1 + 10 * 2 + 100 * 3
    np.testing.assert_array_equal(ns, [1, 2, 3])
    assert int(state["counter"]["loop"]["n"]) == 3
    (c, ns), _ = Model(True).apply(start, xs, mutable="counter")
    assert float(c) == 100 * 1 + 10 * 2 + 1 * 3
    np.testing.assert_array_equal(ns, [3, 2, 1])


def test_scan_in_and_out_axes_and_broadcast_inputs():
    class Add(nn.Module):
        @nn.compact
        def __call__(self, c, x, shift):
            return c + x, x + shift

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, xs, shift):
            return scan(Add, in_axes=(1, broadcast), out_axes=1)()(c, xs, shift)

    xs = jnp.arange(12.0).reshape(2, 3, 2)
    c, ys = Model().apply({}, jnp.zeros((2, 2)), xs, jnp.ones(()))
    np.testing.assert_allclose(c, xs.sum(1))
    np.testing.assert_allclose(ys, xs + 1)


def test_scan_length_errors():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, a, b):
            return scan(ScanBlockXs, in_axes=(0, 0))()(c, a, b)

    class ScanBlockXs(nn.Module):
        def __call__(self, c, a, b):
            return c, None

    with pytest.raises(errors.TransformError, match="different lengths"):
        Model().init(jax.random.PRNGKey(0), jnp.ones(2), jnp.ones((3, 2)), jnp.ones((4, 2)))

    class NoXs(nn.Module):
        @nn.compact
        def __call__(self, c):
            return scan(ScanBlock, variable_axes={"params": 0}, split_rngs={"params": True})()(
                c, None
            )

    with pytest.raises(errors.TransformError, match="length=N"):
        NoXs().init(jax.random.PRNGKey(0), jnp.ones((2, 4)))


def test_vmap_ensemble_and_shared_params():
    class Ensemble(nn.Module):
        shared: bool

        @nn.compact
        def __call__(self, x):
            axes, split = (None, False) if self.shared else (0, True)
            members = vmap(
                Block,
                variable_axes={"params": axes},
                split_rngs={"params": split},
                in_axes=None if not self.shared else 0,
                axis_size=3,
            )
            return members(name="members")(x)

    x = jnp.ones((2, 4))
    own = Ensemble(False).init(jax.random.PRNGKey(0), x)["params"]["members"]["Dense_0"]
    assert own["kernel"].shape == (3, 4, 4)
    out = Ensemble(False).apply({"params": {"members": {"Dense_0": own}}}, x)
    assert out.shape == (3, 2, 4)
    for i in range(3):
        single = {"params": {"Dense_0": jax.tree_util.tree_map(lambda p: p[i], own)}}  # noqa: B023
        np.testing.assert_allclose(out[i], Block().apply(single, x), rtol=1e-6)

    xs = jnp.ones((3, 2, 4))
    shared = Ensemble(True).init(jax.random.PRNGKey(0), xs)["params"]["members"]["Dense_0"]
    assert shared["kernel"].shape == (4, 4)


def test_vmap_axis_name_reaches_collectives():
    class Centered(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x - jax.lax.pmean(x, "batch")

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return vmap(Centered, axis_name="batch")()(x)

    x = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(Model().apply({}, x), x - x.mean(0))


def test_vmap_ignores_keyword_arguments_with_a_warning():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return vmap(Scale)()(x, factor=5.0)

    class Scale(nn.Module):
        def __call__(self, x, factor=2.0):
            return x * factor

    with pytest.warns(RuntimeWarning, match="factor"):
        out = Model().apply({}, jnp.ones((2, 3)))
    np.testing.assert_allclose(out, 2.0)


def test_remat_matches_plain_module_values_and_gradients():
    class Plain(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Block(name="b")(x)

    class Rematted(nn.Module):
        @nn.compact
        def __call__(self, x):
            return remat(Block)(name="b")(x)

    x = jnp.linspace(-1, 1, 8).reshape(2, 4)
    params = Plain().init(jax.random.PRNGKey(0), x)
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(np.array_equal, params, Rematted().init(jax.random.PRNGKey(0), x))
    )
    loss = lambda m: lambda p: jnp.sum(jnp.sin(m.apply(p, x)))  # noqa: E731
    g_plain = jax.grad(loss(Plain()))(params)
    g_remat = jax.grad(loss(Rematted()))(params)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), g_plain, g_remat
    )
    jaxpr = str(jax.make_jaxpr(jax.grad(loss(Rematted())))(params))
    assert "checkpoint" in jaxpr or "remat" in jaxpr


@pytest.mark.parametrize("per_method", [False, True], ids=["kwargs", "methods-dict"])
def test_remat_static_argnums_count_self(per_method):
    class Branchy(nn.Module):
        @nn.compact
        def __call__(self, x, double):
            y = nn.Dense(2)(x)
            return y * 2 if double else y  # Python control flow on a static argument

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, double):
            if per_method:
                layer = remat(Branchy, methods={"__call__": {"static_argnums": (2,)}})
            else:
                layer = remat(Branchy, static_argnums=(2,))
            return layer(name="b")(x, double)

    x = jnp.ones((1, 3))
    variables = Model().init(jax.random.PRNGKey(0), x, True)
    np.testing.assert_allclose(
        Model().apply(variables, x, True), 2 * Model().apply(variables, x, False), rtol=1e-6
    )


def test_remat_scan_nests_one_axis_per_level():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return remat_scan(Block, lengths=(2, 3))(name="deep")(x)

    x = jnp.linspace(-1, 1, 8).reshape(2, 4)
    variables = Model().init(jax.random.PRNGKey(0), x)
    dense = variables["params"]["deep"]["Dense_0"]
    assert dense["kernel"].shape == (2, 3, 4, 4)
    want = x
    for i in range(2):
        for j in range(3):
            p = {"params": {"Dense_0": jax.tree_util.tree_map(lambda a: a[i, j], dense)}}  # noqa: B023
            want = Block().apply(p, want)
    np.testing.assert_allclose(Model().apply(variables, x), want, rtol=1e-5)


def test_map_variables_stores_through_trans_out_and_reads_through_trans_in():
    def transpose(variables):
        return jax.tree_util.tree_map(lambda v: v.T, variables)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = map_variables(nn.Dense, "params", transpose, transpose, init=True)
            return dense(3, use_bias=False, name="dense")(x)

    x = jnp.arange(8.0).reshape(2, 4)
    variables = Model().init(jax.random.PRNGKey(0), x)
    stored = variables["params"]["dense"]["kernel"]
    assert stored.shape == (3, 4)  # Dense made (4, 3); trans_out stored its transpose
    np.testing.assert_allclose(Model().apply(variables, x), x @ stored.T, rtol=1e-6)


def test_map_variables_mapped_collection_is_read_only_inside():
    class Writer(nn.Module):
        @nn.compact
        def __call__(self, x):
            v = self.variable("state", "v", jnp.zeros, ())
            v.value = v.value + x.sum()
            return x

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return map_variables(Writer, "state")(name="w")(x)

    state = {"state": {"w": {"v": jnp.zeros(())}}}
    with pytest.raises(errors.CollectionNotMutableError):
        Model().apply(state, jnp.ones(2), mutable=["state"])


def test_jit_reuses_its_compilation_and_keeps_rng_counters_going():
    traces = []

    class Noisy(nn.Module):
        @nn.compact
        def __call__(self, x):
            traces.append(1)
            return nn.Dense(3)(x) + jax.random.normal(self.make_rng("noise"), x.shape[:-1] + (3,))

    JitNoisy = jit(Noisy)  # one transformed class: one cache of compilations

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            layer = JitNoisy(name="layer")
            return layer(x), layer(x)

    x = jnp.ones((2, 3))
    rngs = {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}
    variables = Model().init(rngs, x)
    a, b = Model().apply(variables, x, rngs={"noise": jax.random.PRNGKey(2)})
    assert not np.allclose(a, b)  # fresh noise in the second call: the counters moved on
    traces.clear()
    a2, b2 = Model().apply(variables, x, rngs={"noise": jax.random.PRNGKey(2)})
    assert traces == []  # a new apply with the same configuration reuses the compilations
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)


def test_fold_rngs_forks_keys_as_jit_does_without_compiling():
    traces = []

    def noisy(transform):
        class Noisy(nn.Module):
            @transform
            @nn.compact
            def __call__(self, x):
                traces.append(transform)
                return nn.Dense(3)(x) + jax.random.normal(self.make_rng("noise"), (3,))

        return Noisy()

    x, rngs = jnp.ones((3,)), {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}
    folded = noisy(nn.fold_rngs).init_with_output(rngs, x)
    jitted = noisy(jit).init_with_output(rngs, x)
    plain = noisy(lambda f: f).init_with_output(rngs, x)
    for a, b in zip(jax.tree_util.tree_leaves(folded[1]), jax.tree_util.tree_leaves(jitted[1])):
        np.testing.assert_array_equal(a, b)  # the same keys: bit-identical parameters
    np.testing.assert_allclose(folded[0], jitted[0], rtol=1e-6)  # (compiled: rounding differs)
    assert not np.allclose(folded[0], plain[0])  # the keys inside were forked
    traces.clear()
    model = noisy(nn.fold_rngs)
    for _ in range(2):
        model.apply(folded[1], x, rngs={"noise": jax.random.PRNGKey(2)})
    assert traces == [nn.fold_rngs] * 2  # run as Python each time, never compiled


def test_transforms_decorate_methods():
    class Model(nn.Module):
        @jit
        @nn.compact
        def __call__(self, x):
            return self.head(nn.Dense(3)(x))

        @remat
        @nn.compact
        def head(self, x):
            return nn.Dense(2)(x)

    x = jnp.ones((1, 4))
    variables = Model().init(jax.random.PRNGKey(0), x)
    assert set(variables["params"]) == {"Dense_0", "Dense_1"}
    assert Model().apply(variables, x).shape == (1, 2)


def test_transform_errors_name_the_problem():
    with pytest.raises(errors.TransformError, match="Module class or a Module method"):
        scan(Block())
    with pytest.raises(errors.TransformError, match="does not have"):
        vmap(Block, methods=["missing"])
    with pytest.raises(errors.TransformError, match="options it does not take"):
        vmap(Block, methods={"__call__": {"split_rng": {"params": True}}})
    with pytest.raises(errors.UnboundModuleError, match="unbound module"):
        remat(Block)()(jnp.ones((1, 4)))

    class ReturnsModule(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)

    class Outer(nn.Module):
        @nn.compact
        def __call__(self, x):
            return remat(ReturnsModule)()(x)

    with pytest.raises(errors.TransformedMethodReturnValueError, match="returned a Dense"):
        Outer().init(jax.random.PRNGKey(0), jnp.ones((1, 2)))


def test_transformed_class_names_and_partial():
    import functools

    assert scan(Block).__name__ == "ScanBlock"
    assert vmap(Block).__name__ == "VmapBlock"
    assert remat(Block).__name__ == "CheckpointBlock"
    assert jit(Block).__name__ == "JitBlock"
    assert map_variables(Block).__name__ == "Map_variablesBlock"
    wide = remat(functools.partial(Block, features=6))

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return wide()(x)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        variables = Model().init(jax.random.PRNGKey(0), jnp.ones((1, 6)))
    assert variables["params"]["CheckpointBlock_0"]["Dense_0"]["kernel"].shape == (6, 6)


def test_filter_algebra_agrees_with_in_filter():
    from minilinen.core.scope import DenyList, in_filter
    from minilinen.transforms.filters import intersect, is_empty, subtract, union

    filters = [True, False, "params", ["params", "stats"], ("stats",), DenyList("params")]
    filters += [DenyList(["params", "cache"]), DenyList(True), DenyList(DenyList("stats"))]
    cols = ["params", "stats", "cache", "intermediates"]
    for a in filters:
        assert is_empty(a) == (not any(in_filter(a, c) for c in cols + ["other"]))
        for b in filters:
            for c in cols:
                ia, ib = in_filter(a, c), in_filter(b, c)
                assert in_filter(union(a, b), c) == (ia or ib), (a, b, c)
                assert in_filter(intersect(a, b), c) == (ia and ib), (a, b, c)
                assert in_filter(subtract(a, b), c) == (ia and not ib), (a, b, c)
