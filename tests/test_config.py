"""flax.config's flags in minilinen.config: honoured, fixed, or refused by name."""

import jax
import jax.numpy as jnp
import pytest

import minilinen as nn
from minilinen import config, errors


@pytest.fixture
def flag():
    """Sets a flag for one test and puts the old value back."""
    saved = {}

    def set_flag(name, value):
        saved.setdefault(name, getattr(config, name))
        config.update(name, value)

    yield set_flag
    for name, value in saved.items():
        config.update(name, value)


X = jnp.ones((1, 3))


def test_minilinen_returns_frozendicts_by_default():
    assert config.flax_return_frozendict is True
    variables = nn.Dense(2).init(jax.random.key(0), X)
    assert type(variables) is nn.FrozenDict


@pytest.mark.parametrize("frozen", [True, False])
def test_bound_variables_and_unbind_follow_the_return_frozendict_flag(flag, frozen):
    # Flax: Module.variables and unbind() hand back the same kind of tree as init.
    flag("flax_return_frozendict", frozen)
    kind = nn.FrozenDict if frozen else dict
    variables = nn.Dense(2).init(jax.random.key(0), X)
    bound = nn.Dense(2).bind(variables)
    assert type(bound.variables) is kind and type(bound.variables["params"]) is kind
    _, unbound_variables = bound.unbind()
    assert type(unbound_variables) is kind
    jax.tree_util.tree_map(lambda a, b: None, variables, unbound_variables)  # same structure


def test_return_frozendict_false_gives_plain_dicts_from_init_and_apply(flag):
    flag("flax_return_frozendict", False)
    model = nn.BatchNorm(use_running_average=False)
    out, variables = model.init_with_output(jax.random.key(0), X)
    assert type(variables) is dict and type(variables["batch_stats"]) is dict
    assert type(model.init(jax.random.key(0), X)["params"]) is dict
    _, updates = model.apply(variables, X, mutable=["batch_stats"])
    assert type(updates) is dict and type(updates["batch_stats"]["mean"]) is not dict
    # The returned trees are the caller's own: writing into them leaves the input alone.
    updates["batch_stats"]["mean"] = jnp.full((3,), 7.0)
    assert float(variables["batch_stats"]["mean"][0]) == 0.0
    inferred = model.clone(use_running_average=True).apply(variables, X)
    assert inferred.shape == out.shape


class Foo(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x + self.param("p", nn.initializers.zeros, x.shape)


class Bar(nn.Module):
    sub: nn.Module

    def __call__(self, x):
        return self.sub(x)


class KeepNames(Bar):
    preserve_adopted_names = True


@pytest.mark.parametrize("preserve, name", [(False, "sub"), (True, "foo")])
def test_preserve_adopted_names_keeps_an_outside_modules_own_name(flag, preserve, name):
    flag("flax_preserve_adopted_names", preserve)
    params = Bar(sub=Foo(name="foo")).init(jax.random.key(0), jnp.zeros((1,)))["params"]
    assert list(params) == [name]
    unnamed = Bar(sub=Foo()).init(jax.random.key(0), jnp.zeros((1,)))["params"]
    assert list(unnamed) == ["sub"]  # nothing to preserve: named by its attribute


def test_preserve_adopted_names_class_attribute_wins_over_the_flag(flag):
    flag("flax_preserve_adopted_names", False)
    params = KeepNames(sub=Foo(name="foo")).init(jax.random.key(0), jnp.zeros((1,)))["params"]
    assert list(params) == ["foo"]


@pytest.mark.parametrize(
    "name, fixed",
    [
        ("flax_fix_rng_separator", False),
        ("flax_use_orbax_checkpointing", False),
        ("flax_filter_frames", False),
        ("flax_use_flaxlib", False),
    ],
)
def test_fixed_flags_accept_only_minilinens_behaviour(name, fixed):
    assert getattr(config, name) is fixed
    config.update(name, fixed)
    with pytest.raises(errors.ConfigValueError, match=f"always behaves as {name}={fixed}"):
        config.update(name, not fixed)
    assert getattr(config, name) is fixed


def test_profile_flag_names_module_calls_in_the_compiled_program(flag):
    assert config.flax_profile is False  # Flax's default is True: see nn.enable_named_call
    variables = nn.Dense(2).init(jax.random.key(0), X)

    def hlo():  # a fresh function each time: jit's cache would keep the first trace's names
        return jax.jit(lambda v: nn.Dense(2).apply(v, X)).lower(variables).as_text(debug_info=True)

    assert "Dense/dot_general" not in hlo()
    flag("flax_profile", True)
    assert "Dense/dot_general" in hlo()


@pytest.mark.parametrize("name", ["nnx_graph_mode", "flax_array_ref", "flax_pytree_module"])
def test_nnx_flags_are_refused_as_out_of_scope(name):
    with pytest.raises(errors.ConfigOptionError, match="NNX, which is out of scope"):
        config.update(name, True)
    with pytest.raises(AttributeError, match="NNX"):
        getattr(config, name)


def test_unknown_flags_raise_lookup_error_like_flax():
    with pytest.raises(LookupError, match="Unrecognized config option: flax_no_such"):
        config.update("flax_no_such", True)
    assert getattr(config, "flax_no_such", "default") == "default"
    assert issubclass(errors.ConfigOptionError, errors.MinilinenError)
