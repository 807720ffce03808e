"""Each core error class, provoked the way a user meets it."""

import jax
import jax.numpy as jnp
import pytest

import minilinen as nn
from minilinen import errors
from minilinen.core import freeze

KEY = jax.random.PRNGKey(0)
X = jnp.ones((2, 3))


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(4)(x)
        return nn.Dense(2)(x)


class Explicit(nn.Module):
    def setup(self):
        self.layers = [nn.Dense(2)]

    def __call__(self, x):
        return self.layers[0](x)


@pytest.fixture(scope="module")
def mlp_variables():
    return MLP().init(KEY, X)


def test_every_error_is_a_minilinen_error_and_a_builtin():
    for name in dir(errors):
        cls = getattr(errors, name)
        if (
            isinstance(cls, type)
            and issubclass(cls, Exception)
            and cls is not errors.MinilinenError
        ):
            assert issubclass(cls, errors.MinilinenError), name
            builtin_bases = [b for b in cls.__mro__ if b.__module__ == "builtins"]
            assert len(builtin_bases) > 2, f"{name} should also subclass a builtin error"


def test_frozen_dict_is_immutable():
    with pytest.raises(errors.FrozenDictImmutableError, match="immutable"):
        freeze({"a": 1})["a"] = 2


def test_passing_params_instead_of_variables(mlp_variables):
    with pytest.raises(errors.ParamNotFoundError, match=r"\{'params': params\}"):
        MLP().apply(mlp_variables["params"], X)
    dense = nn.Dense(2)
    with pytest.raises(errors.ApplyVariablesError, match=r"variables\['params'\]"):
        dense.apply(dense.init(KEY, X)["params"], X)
    with pytest.raises(errors.ApplyVariablesError, match="dict of collections"):
        dense.apply(3, X)


def test_missing_parameter_names_module_and_fix():
    with pytest.raises(errors.ParamNotFoundError, match="'kernel' in module '/Dense_0'"):
        MLP().apply({"params": {}}, X)


def test_writing_an_immutable_collection():
    class Counter(nn.Module):
        @nn.compact
        def __call__(self, x):
            count = self.variable("counter", "n", lambda: 0)
            count.value += 1
            return x

    variables = Counter().init(KEY, X)
    with pytest.raises(errors.CollectionNotMutableError, match=r"mutable=\['counter'\]"):
        Counter().apply(variables, X)


def test_reading_a_missing_variable_in_an_immutable_collection():
    class Stats(nn.Module):
        @nn.compact
        def __call__(self, x):
            return self.variable("batch_stats", "mean", jnp.zeros, x.shape[-1]).value

    with pytest.raises(errors.VariableNotFoundError, match="batch_stats/mean"):
        Stats().apply({"params": {}}, X)


def test_param_shape_differs_from_init(mlp_variables):
    with pytest.raises(errors.ParamShapeError, match=r"'kernel' in module '/Dense_0'.*\(3, 4\)"):
        MLP().apply(mlp_variables, jnp.ones((2, 5)))


def test_two_submodules_with_one_name():
    class Clash(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2, name="d")(x) + nn.Dense(2, name="d")(x)

    with pytest.raises(errors.NameInUseError, match="'d'"):
        Clash().init(KEY, X)


def test_param_and_submodule_with_one_name():
    class Clash(nn.Module):
        @nn.compact
        def __call__(self, x):
            self.param("d", nn.initializers.zeros, (1,))
            return nn.Dense(2, name="d")(x)

    with pytest.raises(errors.NameInUseError):
        Clash().init(KEY, X)


def test_invalid_names():
    class BadName(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2, name="a/b")(x)

    with pytest.raises(errors.InvalidNameError, match="'/'"):
        BadName().init(KEY, X)


def test_missing_rng_stream():
    class Noisy(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x + jax.random.normal(self.make_rng("dropout"), x.shape)

    with pytest.raises(errors.RngStreamMissingError, match=r"rngs=\{'dropout': key\}"):
        Noisy().apply({}, X)


def test_an_int_instead_of_a_key():
    with pytest.raises(errors.InvalidRngError, match="PRNGKey"):
        MLP().init(0, X)
    with pytest.raises(errors.InvalidRngError, match="dict of PRNG keys"):
        MLP().apply({"params": {}}, X, rngs=KEY)


def test_setup_attribute_outside_init_or_apply():
    with pytest.raises(errors.SetupAttributeUnboundError) as info:
        Explicit()(X)
    assert str(info.value) == (
        '"Explicit" object has no attribute "layers". If "layers" is defined in '
        "'.setup()', remember these fields are only accessible from inside 'init' or "
        "'apply'."
    )


def test_missing_attribute_and_method_on_bound_module(mlp_variables):
    bound = MLP().bind(mlp_variables)
    with pytest.raises(errors.ModuleAttributeError, match="no attribute"):
        _ = bound.nothing_here
    with pytest.raises(errors.ModuleAttributeError, match="no method 'encode'"):
        MLP().apply(mlp_variables, X, method="encode")


def test_bound_only_calls_on_an_unbound_module():
    with pytest.raises(errors.UnboundModuleError, match="init"):
        MLP()(X)
    with pytest.raises(errors.UnboundModuleError, match="bound module"):
        _ = MLP().variables
    with pytest.raises(errors.UnboundModuleError):
        MLP().param("w", nn.initializers.zeros, (1,))


def test_setting_an_attribute_of_a_bound_module(mlp_variables):
    bound = MLP().bind(mlp_variables)
    with pytest.raises(errors.SetAttributeFrozenModuleError, match="outside setup"):
        bound.extra = 1


def test_submodule_outside_setup_or_compact():
    class NotCompact(nn.Module):
        def __call__(self, x):
            return nn.Dense(2)(x)

    with pytest.raises(
        errors.SubmoduleOutsideSetupOrCompactError,
        match=r"in `setup\(\)` or in a method wrapped in `@compact`",
    ):
        NotCompact().init(KEY, X)


def test_messages_carry_the_phrases_flax_s_tests_match():
    class Draws(nn.Module):
        def __call__(self, x):
            return self.make_rng("dropout") if self.has_rng("dropout") else x

    with pytest.raises(errors.UnboundModuleError, match="Can't call compact methods on unbound"):
        nn.Dense(2)(X)
    with pytest.raises(errors.UnboundModuleError, match="RNGs.*unbound module"):
        Draws()(X)
    with pytest.raises(errors.RngStreamMissingError, match='Dense_0 needs PRNG for "params"'):
        MLP().init({"other": KEY}, X)


def test_reserved_field_names():
    with pytest.raises(errors.ModuleFieldError, match="parent"):

        class Bad(nn.Module):
            parent: int = 0


def test_unknown_mutable_filter(mlp_variables):
    with pytest.raises(errors.InvalidFilterError, match="DenyList"):
        MLP().apply(mlp_variables, X, mutable=3)


def test_using_a_module_after_its_apply_returned(mlp_variables):
    leaked = []

    class Leaky(nn.Module):
        @nn.compact
        def __call__(self, x):
            leaked.append(self)
            return x

    Leaky().apply({}, X)
    with pytest.raises(errors.ScopeInvalidatedError, match="after the init/apply"):
        leaked[0].put_variable("cache", "x", 1)


def test_unbound_module_misuse_and_bad_rngs_are_value_errors_as_in_flax():
    for call in (
        lambda: MLP().make_rng("dropout"),
        lambda: MLP().variables,
        lambda: MLP().unbind(),
        lambda: MLP()(X),
    ):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(errors.CallUnbindOnUnboundModuleError, match="unbind"):
        MLP().unbind()
    for rngs in (0, {"params": jnp.ones(3)}):
        with pytest.raises(ValueError):
            MLP().init(rngs, X)


FLAX_ERROR_NAMES = """TraceContextError LazyInitError InvalidRngError
ApplyScopeInvalidVariablesTypeError ApplyScopeInvalidVariablesStructureError
ScopeParamNotFoundError ScopeCollectionNotFound ScopeParamShapeError
ScopeVariableNotFoundError InvalidFilterError InvalidScopeError ModifyScopeVariableError
ImmutableVariableError JaxTransformError PartitioningUnspecifiedError NameInUseError
AssignSubModuleError SetAttributeInModuleSetupError SetAttributeFrozenModuleError
MultipleMethodsCompactError ReservedModuleAttributeError ApplyModuleInvalidMethodError
CallCompactUnboundModuleError CallSetupUnboundModuleError CallUnbindOnUnboundModuleError
CallShareScopeOnUnboundModuleError InvalidInstanceModuleError IncorrectPostInitOverrideError
DescriptorAttributeError InvalidCheckpointError MPACheckpointingRequiredError
MPARestoreTargetRequiredError MPARestoreDataCorruptedError TransformedMethodReturnValueError
TransformTargetError AlreadyExistsError CursorFindError TraverseTreeError FlaxError""".split()


def test_every_flax_error_name_exists():
    # The 39 classes of flax 0.12.8's flax/errors.py.
    assert len(FLAX_ERROR_NAMES) == 39
    for name in FLAX_ERROR_NAMES:
        assert issubclass(getattr(errors, name), errors.MinilinenError), name


def test_flax_error_names_catch_what_flax_raises_there(mlp_variables):
    dense = nn.Dense(2)
    variables = dense.init(KEY, X)
    with pytest.raises(errors.ScopeParamShapeError):
        dense.apply(variables, jnp.ones((2, 4)))
    with pytest.raises(errors.ScopeCollectionNotFound):
        dense.apply({}, X)
    with pytest.raises(errors.ApplyScopeInvalidVariablesTypeError):
        dense.apply(variables["params"], X)
    with pytest.raises(errors.CallCompactUnboundModuleError):
        dense(X)
    with pytest.raises(errors.InvalidInstanceModuleError):
        nn.Dense.init(KEY, X)
    with pytest.raises(errors.ApplyModuleInvalidMethodError):
        dense.apply(variables, X, method=3)

    class PostInit(nn.Module):
        x: float = 1.0

        def __post_init__(self):  # forgets super().__post_init__()
            self.y = 2

        def __call__(self, x):
            return x

    with pytest.raises(errors.IncorrectPostInitOverrideError, match="super"):
        PostInit().init(KEY, X)

    class Prop(nn.Module):
        @property
        def prop(self):
            return self.missing

        def __call__(self):
            return self.prop

    with pytest.raises(errors.DescriptorAttributeError, match="missing"):
        Prop().apply({})

    class SetsField(nn.Module):
        size: int = 1

        def setup(self):
            self.size = 2

        def __call__(self, x):
            return x

    with pytest.raises(errors.SetAttributeInModuleSetupError, match="'size'"):
        SetsField().init(KEY, X)


def test_submodule_assigned_outside_setup_names_the_attribute():
    class Late(nn.Module):
        def __call__(self, x):
            self.late = nn.Dense(3)
            return x

    class LateCompact(nn.Module):
        @nn.compact
        def __call__(self, x):
            self.late = nn.Dense(3)
            return x

    for model in (Late(), LateCompact()):
        with pytest.raises(errors.AssignSubModuleError, match="'late'"):
            model.init(KEY, X)
