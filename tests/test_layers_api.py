"""The layer library's public names, initializers, dtype handling and named errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minilinen as nn
import minilinen.layers
from minilinen.errors import (
    LayerConfigError,
    LayerInputError,
    LayerNotSupportedError,
    MergeParamError,
    MinilinenError,
)
from minilinen.layers.common import promote_dtype

ACTIVATIONS = [
    *("celu", "elu", "gelu", "glu", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh"),
    *("leaky_relu", "log_sigmoid", "log_softmax", "logsumexp", "one_hot", "relu", "relu6"),
    *("selu", "sigmoid", "silu", "soft_sign", "softmax", "softplus", "standardize", "swish"),
]


def test_every_public_layer_name_is_exported_from_the_package():
    for name in minilinen.layers.__all__:
        assert getattr(nn, name) is getattr(minilinen.layers, name), name


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_are_jax_nn_functions(name):
    assert getattr(nn, name) is getattr(jax.nn, name)


def test_tanh_and_normalize_aliases():
    assert nn.tanh is jnp.tanh
    assert nn.normalize is jax.nn.standardize


def test_initializers_match_jax_plus_zeros_and_ones_init():
    for name in ("lecun_normal", "glorot_uniform", "orthogonal", "variance_scaling", "zeros"):
        assert getattr(nn.initializers, name) is getattr(jax.nn.initializers, name)
    k = jax.random.key(0)
    np.testing.assert_array_equal(nn.initializers.zeros_init()(k, (2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(nn.initializers.ones_init()(k, (2,)), np.ones(2))


def test_promote_dtype_passes_matching_arrays_through_untouched():
    x = jnp.ones((2, 2))
    k = jnp.ones((2, 3))
    px, pk, none = promote_dtype(x, k, None)
    assert px is x and pk is k and none is None
    (bx,) = promote_dtype(x, dtype=jnp.bfloat16)
    assert bx.dtype == jnp.bfloat16
    (ix,) = promote_dtype(jnp.arange(3))
    assert ix.dtype == jnp.float32
    with pytest.raises(LayerConfigError, match="floating"):
        promote_dtype(x, dtype=jnp.int32)


def test_numpy_inputs_give_the_same_results_as_jax_arrays():
    x = np.random.RandomState(0).standard_normal((3, 4)).astype(np.float32)
    for module in (nn.Dense(2), nn.LayerNorm(), nn.BatchNorm(use_running_average=True)):
        variables = module.init(jax.random.key(0), jnp.asarray(x))
        np.testing.assert_array_equal(
            module.apply(variables, x), module.apply(variables, jnp.asarray(x))
        )


def test_dtype_and_param_dtype_follow_flax_promotion():
    x = jnp.ones((2, 3))
    layer = nn.Dense(4, dtype=jnp.bfloat16)
    variables = layer.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    assert layer.apply(variables, x).dtype == jnp.bfloat16
    layer = nn.Dense(4, param_dtype=jnp.bfloat16)
    variables = layer.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.bfloat16
    assert layer.apply(variables, x).dtype == jnp.float32


def test_dropout_keeps_the_expected_fraction_and_rescales():
    x = jnp.ones((200, 50))
    y = nn.Dropout(0.25, deterministic=False).apply({}, x, rngs={"dropout": jax.random.key(0)})
    kept = np.asarray(y) != 0
    assert 0.72 < kept.mean() < 0.78
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / 0.75)


def test_pooling_values():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(
        nn.max_pool(x, (2, 2), strides=(2, 2))[0, :, :, 0], [[5, 7], [13, 15]]
    )
    np.testing.assert_array_equal(
        nn.avg_pool(x, (2, 2), strides=(2, 2))[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]]
    )
    np.testing.assert_array_equal(
        nn.min_pool(x, (2, 2), strides=(2, 2))[0, :, :, 0], [[0, 2], [8, 10]]
    )


def test_sequential_chains_and_shares_names_with_flax():
    seq = nn.Sequential([nn.Dense(3), nn.relu, nn.Dense(1)])
    variables = seq.init(jax.random.key(0), jnp.ones((2, 4)))
    assert list(variables["params"]) == ["layers_0", "layers_2"]


def test_embed_attend_is_the_transpose_lookup():
    embed = nn.Embed(5, 3)
    variables = embed.init(jax.random.key(0), jnp.arange(2))
    table = variables["params"]["embedding"]
    q = jnp.ones((2, 3))
    np.testing.assert_allclose(embed.apply(variables, q, method="attend"), q @ table.T, rtol=1e-6)
    np.testing.assert_array_equal(
        embed.apply(variables, jnp.asarray([4, 0])), table[jnp.asarray([4, 0])]
    )


def _init(module, *args):
    return module.init(jax.random.key(0), *args)


BAD = [
    ("Embed float input", LayerInputError, "integer", lambda: _init(nn.Embed(3, 2), jnp.ones(2))),
    (
        "DenseGeneral batch_dims",
        LayerConfigError,
        "consecutive",
        lambda: _init(nn.DenseGeneral(2, batch_dims=(1,)), jnp.ones((2, 3, 4))),
    ),
    (
        "Einsum implicit",
        LayerConfigError,
        "explicit",
        lambda: _init(nn.Einsum((3, 2), "ab,bc"), jnp.ones((2, 3))),
    ),
    (
        "Einsum operands",
        LayerConfigError,
        "two operands",
        lambda: _init(nn.Einsum((3, 2), "ab,bc,cd->ad"), jnp.ones((2, 3))),
    ),
    (
        "Einsum str twice",
        MergeParamError,
        "constructor and at call time",
        lambda: _init(nn.Einsum((3, 2), "ab,bc->ac"), jnp.ones((2, 3)), "ab,bc->ac"),
    ),
    (
        "Conv padding",
        LayerConfigError,
        "Invalid padding",
        lambda: _init(nn.Conv(2, (3, 3), padding=[1]), jnp.ones((1, 4, 4, 1))),
    ),
    (
        "Conv causal 2d",
        LayerConfigError,
        "CAUSAL",
        lambda: _init(nn.Conv(2, (3, 3), padding="CAUSAL"), jnp.ones((1, 4, 4, 1))),
    ),
    (
        "Conv groups",
        LayerConfigError,
        "feature_group_count",
        lambda: _init(nn.Conv(2, 3, feature_group_count=2), jnp.ones((1, 4, 3))),
    ),
    (
        "Conv mask",
        LayerConfigError,
        "mask",
        lambda: _init(nn.Conv(2, 3, mask=jnp.ones((2, 1, 2))), jnp.ones((1, 4, 1))),
    ),
    (
        "ConvLocal mask",
        LayerConfigError,
        "kernel has shape",
        lambda: _init(nn.ConvLocal(2, 3, mask=jnp.ones((3, 1, 2))), jnp.ones((1, 4, 1))),
    ),
    (
        "BatchApply rank",
        LayerInputError,
        "ndim >= 2",
        lambda: nn.BatchApply(jnp.sum)(jnp.ones(3), 2.0),
    ),
    (
        "SpectralNorm non-matrix",
        LayerInputError,
        "error_on_non_matrix",
        lambda: nn.SpectralNorm(nn.Conv(2, (2,)), error_on_non_matrix=True).init(
            jax.random.key(0), jnp.ones((1, 4, 3)), update_stats=False
        ),
    ),
    (
        "attention inputs_v without inputs_k",
        LayerConfigError,
        "`inputs_k` cannot be None if `inputs_v` is not None",
        lambda: _init(nn.MultiHeadDotProductAttention(1), jnp.ones((1, 2, 2)), None, jnp.ones(2)),
    ),
    (
        "Sequential empty",
        LayerConfigError,
        "no layers",
        lambda: _init(nn.Sequential([]), jnp.ones(2)),
    ),
    (
        "Dropout deterministic",
        MergeParamError,
        "deterministic",
        lambda: _init(nn.Dropout(0.5), jnp.ones(2)),
    ),
    (
        "heads",
        LayerConfigError,
        "num_heads",
        lambda: _init(nn.MultiHeadDotProductAttention(num_heads=3), jnp.ones((1, 2, 4))),
    ),
    (
        "pool strides",
        LayerConfigError,
        "strides",
        lambda: nn.max_pool(jnp.ones((1, 4, 4, 1)), (2, 2), strides=(2,)),
    ),
]


@pytest.mark.parametrize(("what", "error", "match", "call"), BAD, ids=[b[0] for b in BAD])
def test_bad_layer_use_raises_a_named_error(what, error, match, call):
    with pytest.raises(error, match=match) as info:
        call()
    assert isinstance(info.value, MinilinenError) and isinstance(info.value, ValueError)


def test_sequential_rejects_a_non_sequence():
    with pytest.raises(LayerConfigError, match="sequence"):
        nn.Sequential(nn.Dense(2))


def test_attention_subclasses_autoname_by_their_own_class():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.MultiHeadAttention(num_heads=2)(x) + nn.SelfAttention(num_heads=2)(x)

    variables = Model().init(jax.random.key(0), jnp.ones((1, 2, 4)))
    assert list(variables["params"]) == ["MultiHeadAttention_0", "SelfAttention_0"]


def test_dense_general_reshapes_boxed_partitioned_kernels():
    from minilinen.partitioning import with_partitioning

    init = with_partitioning(nn.initializers.lecun_normal(), ("embed", "heads", "kv"))
    mha = nn.MultiHeadDotProductAttention(num_heads=2, kernel_init=init)
    x = jnp.ones((1, 3, 4))
    variables = mha.init(jax.random.key(0), x)
    boxed = variables["params"]["query"]["kernel"]
    assert boxed.names == ("embed", "heads", "kv") and boxed.value.shape == (4, 2, 2)
    plain = nn.MultiHeadDotProductAttention(num_heads=2).init(jax.random.key(0), x)
    np.testing.assert_array_equal(boxed.value, plain["params"]["query"]["kernel"])
    assert mha.apply(variables, x).shape == (1, 3, 4)


def test_conv_local_refuses_feature_groups_as_not_implemented():
    # Flax raises NotImplementedError: lax.conv_general_dilated_local has no groups.
    with pytest.raises(LayerNotSupportedError, match="feature_group_count=1") as info:
        _init(nn.ConvLocal(2, 3, feature_group_count=2), jnp.ones((1, 4, 4)))
    assert isinstance(info.value, NotImplementedError)
