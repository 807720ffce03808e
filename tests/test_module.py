"""The Module system as a user meets it: naming, sharing, variables, init/apply/bind."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minilinen as nn
from minilinen import DenyList, FrozenDict

KEY = jax.random.PRNGKey(0)
X = jnp.ones((2, 3))


def shapes(tree):
    return jax.tree_util.tree_map(jnp.shape, nn.core.unfreeze(tree))


class Counter(nn.Module):
    @nn.compact
    def __call__(self, x):
        count = self.variable("counter", "n", lambda: jnp.zeros((), jnp.int32))
        if not self.is_initializing():
            count.value += 1
        return nn.Dense(2)(x)


class SetupMLP(nn.Module):
    sizes: tuple = (4, 2)

    def setup(self):
        self.layers = [nn.Dense(s) for s in self.sizes]
        self.heads = {"a": nn.Dense(1), "b": nn.Dense(1)}
        self.scale = self.param("scale", nn.initializers.ones, ())

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return (self.heads["a"](x) + self.heads["b"](x)) * self.scale

    def first(self, x):
        return self.layers[0](x)


def test_compact_autonames_count_per_class_and_explicit_names_win():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(3)(x)
            x = nn.LayerNorm()(x)
            x = nn.Dense(3)(x)
            return nn.Dense(2, name="head")(x)

    params = Net().init(KEY, X)["params"]
    assert list(params) == ["Dense_0", "LayerNorm_0", "Dense_1", "head"]


def test_setup_names_attributes_list_items_and_dict_items():
    params = SetupMLP().init(KEY, X)["params"]
    assert set(params) == {"layers_0", "layers_1", "heads_a", "heads_b", "scale"}
    assert shapes(params["layers_1"]) == {"kernel": (4, 2), "bias": (2,)}


def test_setup_lists_become_tuples_and_dicts_frozen():
    model = SetupMLP().bind(SetupMLP().init(KEY, X))
    assert isinstance(model.layers, tuple) and isinstance(model.heads, FrozenDict)


def test_method_by_name_and_by_function():
    model = SetupMLP()
    variables = model.init(KEY, X)
    by_name = model.apply(variables, X, method="first")
    by_fn = model.apply(variables, X, method=SetupMLP.first)
    by_lambda = model.apply(variables, X, method=lambda m, x: m.layers[0](x))
    np.testing.assert_array_equal(by_name, by_fn)
    np.testing.assert_array_equal(by_name, by_lambda)
    assert by_name.shape == (2, 4)


def test_init_with_a_method_creates_only_what_it_touches():
    variables = SetupMLP().init(KEY, X, method="first")
    assert set(variables["params"]) == {"layers_0", "scale"}


def test_submodule_called_twice_shares_parameters():
    class Twice(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(3)
            return dense(dense(x))

    params = Twice().init(KEY, X)["params"]
    assert list(params) == ["Dense_0"]


def test_module_passed_as_field_is_adopted_and_shared():
    class Wrapper(nn.Module):
        inner: nn.Module

        @nn.compact
        def __call__(self, x):
            return self.inner(x) + self.inner(x)

    shared = nn.Dense(3)

    class Outer(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(3)
            return Wrapper(dense)(x) + dense(x)

    assert list(Wrapper(shared).init(KEY, X)["params"]) == ["inner"]
    params = Outer().init(KEY, X)["params"]
    assert list(params) == ["Dense_0"]  # the compact-bound Dense is used, not copied


def test_same_outside_instance_in_two_fields_stays_shared():
    class Two(nn.Module):
        a: nn.Module
        b: nn.Module

        def __call__(self, x):
            return self.a(x) + self.b(x)

    dense = nn.Dense(2)
    assert list(Two(dense, dense).init(KEY, X)["params"]) == ["a"]
    assert list(Two(dense, nn.Dense(2)).init(KEY, X)["params"]) == ["a", "b"]


def test_init_and_apply_return_frozen_dicts_and_accept_plain_dicts():
    model = Counter()
    variables = model.init(KEY, X)
    assert isinstance(variables, FrozenDict)
    assert set(variables) == {"counter", "params"}
    plain = nn.core.unfreeze(variables)
    out, state = model.apply(plain, X, mutable=["counter"])
    assert isinstance(state, FrozenDict) and int(state["counter"]["n"]) == 1
    np.testing.assert_array_equal(out, model.apply(variables, X, mutable="counter")[0])


@pytest.mark.parametrize(
    "mutable, expected",
    [
        (True, {"counter", "params"}),
        ("counter", {"counter"}),
        (["counter", "params"], {"counter", "params"}),
        (DenyList("params"), {"counter"}),
    ],
)
def test_mutable_filters(mutable, expected):
    variables = Counter().init(KEY, X)
    _, state = Counter().apply(variables, X, mutable=mutable)
    assert set(state) == expected


def test_apply_does_not_modify_its_input():
    variables = nn.core.unfreeze(Counter().init(KEY, X))
    Counter().apply(variables, X, mutable=True)
    assert int(variables["counter"]["n"]) == 0


def test_sow_appends_to_a_tuple_and_only_when_mutable():
    class Sower(nn.Module):
        @nn.compact
        def __call__(self, x):
            self.sow("intermediates", "h", x)
            self.sow("intermediates", "h", x * 2)
            return x

    model = Sower()
    _, state = model.apply({}, X, mutable=["intermediates"])
    first, second = state["intermediates"]["h"]
    np.testing.assert_array_equal(second, 2 * first)
    assert model.apply({}, X) is X  # immutable: sow is a no-op
    assert "intermediates" not in model.init(KEY, X)


def test_capture_intermediates_records_every_call():
    _, state = SetupMLP().apply(SetupMLP().init(KEY, X), X, capture_intermediates=True)
    captured = state["intermediates"]
    assert set(captured) == {"__call__", "layers_0", "layers_1", "heads_a", "heads_b"}
    assert captured["layers_0"]["__call__"][0].shape == (2, 4)


def test_rng_streams_and_fallback_to_params():
    class Noisy(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x + jax.random.normal(self.make_rng("noise"), x.shape)

    model = Noisy()
    a = model.apply({}, X, rngs={"noise": jax.random.PRNGKey(1)})
    b = model.apply({}, X, rngs={"noise": jax.random.PRNGKey(2)})
    c = model.apply({}, X, rngs={"params": jax.random.PRNGKey(1)})
    assert model.bind({}, rngs={"params": KEY}).has_rng("noise") is False
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, c)  # missing 'noise' falls back to 'params'


def test_make_rng_counts_per_call_site():
    class TwoDraws(nn.Module):
        @nn.compact
        def __call__(self):
            return self.make_rng("params"), self.make_rng("params")

    k1, k2 = TwoDraws().apply({}, rngs={"params": KEY})
    assert not np.array_equal(k1, k2)


def test_variables_path_and_is_mutable_collection_inside_apply():
    seen = {}

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.Dense(2, name="inner")(x)
            seen["path"] = self.path
            seen["mutable"] = self.is_mutable_collection("params")
            seen["vars"] = shapes(self.variables)
            return y

    class Root(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Probe(name="probe")(x)

    variables = Root().init(KEY, X)
    assert seen["path"] == ("probe",) and seen["mutable"] is True
    Root().apply(variables, X)
    assert seen["mutable"] is False
    assert seen["vars"] == {"params": {"inner": {"kernel": (3, 2), "bias": (2,)}}}


def test_put_get_has_variable():
    class Store(nn.Module):
        @nn.compact
        def __call__(self):
            had = self.has_variable("cache", "x")
            self.put_variable("cache", "x", jnp.arange(3))
            return had, self.get_variable("cache", "x"), self.get_variable("cache", "y", 7)

    (had, value, default), state = Store().apply({}, mutable=["cache"])
    assert had is False and default == 7
    np.testing.assert_array_equal(value, np.arange(3))
    np.testing.assert_array_equal(state["cache"]["x"], np.arange(3))


def test_bind_unbind_and_clone():
    model = SetupMLP()
    variables = model.init(KEY, X)
    bound = model.bind(variables)
    np.testing.assert_array_equal(bound(X), model.apply(variables, X))
    assert bound.layers[1].variables["params"]["kernel"].shape == (4, 2)
    unbound, recovered = bound.unbind()
    assert unbound.scope is None and isinstance(unbound, SetupMLP)
    np.testing.assert_array_equal(unbound.apply(recovered, X), model.apply(variables, X))
    wider = model.clone(sizes=(5, 2))
    assert wider.sizes == (5, 2) and model.sizes == (4, 2)


def test_unbound_module_fields_can_be_set():
    model = SetupMLP()
    model.sizes = (6, 2)
    assert model.init(KEY, X)["params"]["layers_0"]["kernel"].shape == (3, 6)


def test_nowrap_methods_run_as_plain_python():
    class Helper(nn.Module):
        @nn.nowrap
        def double(self, x):
            return 2 * x

        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(self.double(x))

    assert Helper().double(3) == 6
    assert Helper().init(KEY, X)["params"]["Dense_0"]["kernel"].shape == (3, 2)


def test_several_compact_methods_are_allowed_as_in_flax():
    class EncDec(nn.Module):
        @nn.compact
        def encode(self, x):
            return nn.Dense(4, name="enc")(x)

        @nn.compact
        def decode(self, x):
            return nn.Dense(3, name="dec")(x)

        def __call__(self, x):
            return self.decode(self.encode(x))

    variables = EncDec().init(KEY, X)
    assert set(variables["params"]) == {"enc", "dec"}
    assert EncDec().apply(variables, X, method="encode").shape == (2, 4)


def test_modules_are_hashable_and_compare_by_fields():
    assert nn.Dense(3) == nn.Dense(3) and hash(nn.Dense(3)) == hash(nn.Dense(3))
    assert nn.Dense(3) != nn.Dense(4)
    assert "features = 3" in repr(nn.Dense(3))


def test_intercept_methods_sees_every_module_call():
    calls = []

    def record(next_fun, args, kwargs, context):
        calls.append((context.module.path, context.method_name))
        return next_fun(*args, **kwargs)

    model = SetupMLP()
    variables = model.init(KEY, X)
    with nn.intercept_methods(record):
        model.apply(variables, X)
    # As in Flax, setup is intercepted too, before the call that triggered it.
    assert calls[:2] == [((), "setup"), ((), "__call__")]
    assert (("layers_1",), "__call__") in calls and len(calls) == 6


def test_perturb_exposes_gradients_of_intermediate_values():
    class Perturbed(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = self.perturb("h", nn.Dense(2)(x))
            return jnp.sum(h**2)

    model = Perturbed()
    variables = model.init(KEY, X)
    assert variables["perturbations"]["h"].shape == (2, 2)
    grads = jax.grad(lambda v: model.apply(v, X))(variables)
    h = nn.Dense(2).apply({"params": variables["params"]["Dense_0"]}, X)
    np.testing.assert_allclose(grads["perturbations"]["h"], 2 * h, rtol=1e-6)
    assert float(model.apply({"params": variables["params"]}, X)) > 0  # works without it


class Labelled(nn.Module):
    def setup(self):
        self.sub = Labelled.Sub()

    class Sub(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(x)

        def double(self, x):
            return x * 2

    def __call__(self, x):
        return self.sub.double(self.sub(x))


def op_names(fn, *args):
    """The op names (name stacks) in the HLO that jax.jit(fn) lowers to, traced anew
    (jit's cache would keep the names of an earlier trace)."""
    import re

    text = jax.jit(lambda *a: fn(*a)).lower(*args).as_text(debug_info=True)
    return set(re.findall(r'"jit\(<lambda>\)/([^"]*)"', text))


def test_named_calls_label_each_module_method_in_the_compiled_program():
    variables = Labelled().init(KEY, X)

    def run(v, x):
        return Labelled().apply(v, x)

    assert nn.config.flax_profile is False  # minilinen's default (Flax's is True)
    unlabelled = {"dot_general", "add", "reshape", "mul"}
    assert op_names(run, variables, X) == unlabelled
    with nn.override_named_call(True):
        assert nn.config.flax_profile is True
        # Flax's names: the root by its class, then each module by name, '.method' when
        # not __call__.
        assert op_names(run, variables, X) == {
            "Labelled/sub/Dense_0/dot_general",
            "Labelled/sub/Dense_0/add",
            "Labelled/sub/Dense_0/reshape",
            "Labelled/sub.double/mul",
        }
    assert op_names(run, variables, X) == unlabelled
    nn.enable_named_call()
    try:
        assert "Labelled/sub.double/mul" in op_names(run, variables, X)
    finally:
        nn.disable_named_call()
    assert nn.config.flax_profile is False
    assert op_names(run, variables, X) == unlabelled


@pytest.mark.parametrize("force", [True, False])
def test_named_call_labels_one_method(force):
    class Model(nn.Module):
        @nn.named_call
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x)

        @functools.partial(nn.named_call, force=force)
        def scale(self, x):
            return x * 3

    model = Model(name="model")
    variables = Model().init(KEY, X)

    def run(v, x):
        return model.apply(v, x, method=lambda m, x: m.scale(m(x)))

    # Labelled though named calls are off; with force=False only while they are on.
    scaled = {"model.scale/mul"} if force else {"mul"}
    dense = {"model/dot_general", "model/add", "model/reshape"}
    assert op_names(run, variables, X) == dense | scaled
    with nn.override_named_call(True):  # as in Flax, both labels then: the call's and the method's
        assert op_names(run, variables, X) == {
            "model/model/Dense_0/dot_general",
            "model/model/Dense_0/add",
            "model/model/Dense_0/reshape",
            "model.scale/model.scale/mul",
        }
