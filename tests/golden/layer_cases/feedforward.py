"""Golden cases: linear, conv, normalization, pooling, combinators, activations."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .base import Case, case, data, inits, ints, key

# --- linear ---------------------------------------------------------------


@case
def linear_dense_default(nn):
    return Case(nn.Dense(3), (data(2, 4),), key(0))


@case
def linear_dense_nobias_batch(nn):
    m = nn.Dense(5, use_bias=False, kernel_init=inits.normal(0.1))
    return Case(m, (data(2, 3, 4, seed=1),), key(1))


@case
def linear_dense_bf16(nn):
    m = nn.Dense(4, dtype=jnp.bfloat16, bias_init=inits.normal(1.0), precision="highest")
    return Case(m, (data(3, 2, seed=2),), key(2))


@case
def linear_dense_param_f16(nn):
    return Case(nn.Dense(3, param_dtype=jnp.float16), (data(2, 5, seed=3),), key(3))


@case
def linear_densegeneral_features_tuple(nn):
    return Case(nn.DenseGeneral((2, 3)), (data(2, 4),), key(0))


@case
def linear_densegeneral_axes(nn):
    m = nn.DenseGeneral(4, axis=(1, -1), bias_init=inits.normal(1.0))
    return Case(m, (data(2, 3, 5, 2, seed=1),), key(1))


@case
def linear_densegeneral_batch_dims(nn):
    m = nn.DenseGeneral((3, 2), axis=-1, batch_dims=(0,), bias_init=inits.normal(1.0))
    return Case(m, (data(2, 5, 4, seed=2),), key(2))


@case
def linear_densegeneral_nobias(nn):
    m = nn.DenseGeneral(3, axis=(-2, -1), use_bias=False)
    return Case(m, (data(2, 3, 4, seed=3),), key(3))


@case
def linear_embed_lookup(nn):
    return Case(nn.Embed(7, 4), (ints(2, 3, high=7),), key(0))


@case
def linear_embed_attend(nn):
    m = nn.Embed(6, 3)
    return Case(
        m, (ints(4, high=6),), key(1), apply_args=(data(2, 3),), apply_kwargs={"method": "attend"}
    )


@case
def linear_embed_single_f16(nn):
    m = nn.Embed(1, 5, param_dtype=jnp.float16)
    return Case(m, (jnp.zeros((2, 3), jnp.int32),), key(2))


@case
def linear_embed_custom_init(nn):
    m = nn.Embed(5, 2, embedding_init=inits.uniform(1.0), dtype=jnp.bfloat16)
    return Case(m, (ints(3, high=5, seed=3),), key(3))


@case
def linear_einsum_basic(nn):
    m = nn.Einsum((5, 6, 7), "abc,cde->abde", bias_init=inits.normal(1.0))
    return Case(m, (data(3, 4, 5),), key(0))


@case
def linear_einsum_ellipsis(nn):
    m = nn.Einsum((4, 3), "...b,bc->...c", bias_init=inits.normal(1.0))
    return Case(m, (data(2, 3, 4, seed=1),), key(1))


@case
def linear_einsum_call_str_nobias(nn):
    m = nn.Einsum((4, 2, 3), use_bias=False)
    return Case(m, (data(2, 4, seed=2), "ab,bcd->acd"), key(2))


@case
def linear_einsum_bias_partial(nn):
    m = nn.Einsum((3, 4), "abc,cd->abd", bias_init=inits.normal(1.0))
    return Case(m, (data(2, 5, 3, seed=3),), key(3))


# --- conv -----------------------------------------------------------------


@case
def conv_1d_same(nn):
    return Case(nn.Conv(4, 3), (data(2, 7, 3),), key(0))


@case
def conv_2d_valid_strided_dilated(nn):
    m = nn.Conv(3, (3, 2), strides=(2, 1), padding="VALID", kernel_dilation=(1, 2))
    return Case(m, (data(2, 9, 8, 2, seed=1),), key(1))


@case
def conv_2d_circular(nn):
    m = nn.Conv(2, (3, 3), padding="CIRCULAR", bias_init=inits.normal(1.0))
    return Case(m, (data(1, 5, 6, 3, seed=2),), key(2))


@case
def conv_2d_int_padding_input_dilation(nn):
    m = nn.Conv(3, (2, 2), padding=1, input_dilation=2)
    return Case(m, (data(2, 4, 4, 2, seed=3),), key(3))


@case
def conv_2d_pair_padding_groups(nn):
    m = nn.Conv(4, (3, 3), padding=((1, 0), (2, 1)), feature_group_count=2, use_bias=False)
    return Case(m, (data(2, 5, 5, 4, seed=4),), key(4))


@case
def conv_3d(nn):
    return Case(nn.Conv(2, (2, 2, 2), strides=2), (data(1, 4, 4, 4, 2, seed=5),), key(5))


@case
def conv_unbatched(nn):
    return Case(nn.Conv(3, (3,), padding="VALID"), (data(6, 2, seed=6),), key(6))


@case
def conv_multi_batch_causal(nn):
    m = nn.Conv(2, 3, padding="CAUSAL", kernel_dilation=2)
    return Case(m, (data(2, 3, 8, 2, seed=7),), key(7))


@case
def conv_reflect_mask(nn):
    mask = jnp.asarray(np.tril(np.ones((3, 3)))[:, :, None, None] * np.ones((1, 1, 2, 3)))
    m = nn.Conv(3, (3, 3), padding="REFLECT", mask=mask)
    return Case(m, (data(1, 5, 5, 2, seed=8),), key(8))


@case
def conv_local_2d_same(nn):
    return Case(nn.ConvLocal(3, (3, 2)), (data(2, 5, 4, 2, seed=20),), key(20))


@case
def conv_local_1d_strided_valid_dilated(nn):
    m = nn.ConvLocal(2, 3, strides=2, padding="VALID", kernel_dilation=2, use_bias=False)
    return Case(m, (data(3, 11, 3, seed=21),), key(21))


@case
def conv_local_circular_multi_batch_bf16(nn):
    m = nn.ConvLocal(2, (2, 2), padding="CIRCULAR", dtype=jnp.bfloat16, bias_init=inits.normal())
    return Case(m, (data(2, 2, 4, 3, 2, seed=22),), key(22))


@case
def conv_local_input_dilation_mask(nn):
    mask = jnp.asarray(np.random.RandomState(23).rand(8, 4, 2) > 0.5, jnp.float32)
    m = nn.ConvLocal(2, (2,), padding=1, input_dilation=2, mask=mask)
    return Case(m, (data(2, 4, 2, seed=24),), key(23))


@case
def conv_transpose_1d_same(nn):
    return Case(nn.ConvTranspose(3, (3,)), (data(2, 5, 2),), key(0))


@case
def conv_transpose_2d_strided_valid(nn):
    m = nn.ConvTranspose(2, (3, 3), strides=(2, 2), padding="VALID", bias_init=inits.normal(1.0))
    return Case(m, (data(1, 4, 3, 3, seed=1),), key(1))


@case
def conv_transpose_circular(nn):
    m = nn.ConvTranspose(2, (3, 3), strides=(2, 1), padding="CIRCULAR")
    return Case(m, (data(2, 4, 4, 2, seed=2),), key(2))


@case
def conv_transpose_kernel_transposed_dilated(nn):
    m = nn.ConvTranspose(3, (2, 2), kernel_dilation=(2, 1), transpose_kernel=True, padding=1)
    return Case(m, (data(2, 4, 4, 2, seed=3),), key(3))


@case
def conv_transpose_circular_transposed(nn):
    m = nn.ConvTranspose(2, (4,), strides=(2,), padding="CIRCULAR", transpose_kernel=True)
    return Case(m, (data(5, 3, seed=4),), key(4))


# --- normalization ----------------------------------------------------------

_TRAIN = {"mutable": ["batch_stats"]}


@case
def normalization_batchnorm_train(nn):
    m = nn.BatchNorm(use_running_average=False)
    return Case(
        m, (data(4, 3),), key(0), apply_args=(data(4, 3, seed=1) * 2 + 1,), apply_kwargs=_TRAIN
    )


@case
def normalization_batchnorm_eval_call_arg(nn):
    m = nn.BatchNorm(momentum=0.9, epsilon=1e-3)
    return Case(m, (data(4, 3), False), key(0), apply_args=(data(4, 3, seed=1), True))


@case
def normalization_batchnorm_axis1_noscale(nn):
    m = nn.BatchNorm(use_running_average=False, axis=1, momentum=0.8, use_scale=False)
    return Case(
        m, (data(2, 3, 4),), key(0), apply_args=(data(2, 3, 4, seed=2) - 3,), apply_kwargs=_TRAIN
    )


@case
def normalization_batchnorm_bf16_nobias_slow_var(nn):
    m = nn.BatchNorm(
        use_running_average=False, dtype=jnp.bfloat16, use_bias=False, use_fast_variance=False
    )
    return Case(m, (data(5, 2),), key(0), apply_args=(data(5, 2, seed=3) * 3,), apply_kwargs=_TRAIN)


@case
def normalization_batchnorm_mask(nn):
    m = nn.BatchNorm(use_running_average=False)
    mask = jnp.asarray(np.arange(12).reshape(6, 2) % 5 != 0)
    x = data(6, 2, seed=4)
    return Case(m, (x,), key(0), init_kwargs={"mask": mask}, apply_kwargs={**_TRAIN, "mask": mask})


@case
def normalization_layernorm_default(nn):
    return Case(nn.LayerNorm(), (data(2, 5) * 3 + 1,), key(0))


@case
def normalization_layernorm_axes(nn):
    m = nn.LayerNorm(reduction_axes=(1, 2), feature_axes=-1, scale_init=inits.normal(1.0))
    return Case(m, (data(2, 3, 4, seed=1),), key(1))


@case
def normalization_layernorm_nobias_eps_slow(nn):
    m = nn.LayerNorm(use_bias=False, epsilon=1e-3, use_fast_variance=False)
    return Case(m, (data(3, 4, seed=2) + 5,), key(2))


@case
def normalization_layernorm_bf16_features(nn):
    m = nn.LayerNorm(dtype=jnp.bfloat16, reduction_axes=(-2, -1), feature_axes=(-2, -1))
    return Case(m, (data(2, 3, 4, seed=3),), key(3))


@case
def normalization_rmsnorm_default(nn):
    return Case(nn.RMSNorm(), (data(2, 6),), key(0))


@case
def normalization_rmsnorm_noscale(nn):
    return Case(nn.RMSNorm(use_scale=False, epsilon=1e-2), (data(3, 4, seed=1),), key(1))


@case
def normalization_rmsnorm_axes(nn):
    m = nn.RMSNorm(reduction_axes=(1, 2), feature_axes=(1, 2), scale_init=inits.normal(1.0))
    return Case(m, (data(2, 3, 2, seed=2),), key(2))


@case
def normalization_groupnorm_groups(nn):
    return Case(nn.GroupNorm(num_groups=2), (data(2, 3, 4),), key(0))


@case
def normalization_groupnorm_group_size(nn):
    m = nn.GroupNorm(num_groups=None, group_size=2, bias_init=inits.normal(1.0))
    return Case(m, (data(2, 4, 4, 6, seed=1),), key(1))


@case
def normalization_groupnorm_slow_noscale(nn):
    m = nn.GroupNorm(num_groups=3, use_scale=False, use_fast_variance=False, epsilon=1e-3)
    return Case(m, (data(3, 5, 6, seed=2) + 2,), key(2))


@case
def normalization_instancenorm_default(nn):
    return Case(nn.InstanceNorm(), (data(2, 5, 3),), key(0))


@case
def normalization_instancenorm_2d(nn):
    m = nn.InstanceNorm(scale_init=inits.normal(1.0), bias_init=inits.normal(1.0))
    return Case(m, (data(2, 4, 4, 3, seed=1),), key(1))


@case
def normalization_instancenorm_features(nn):
    m = nn.InstanceNorm(feature_axes=(1, -1), use_bias=False)
    return Case(m, (data(2, 3, 5, 2, seed=2),), key(2))


# --- pooling ----------------------------------------------------------------


@case
def pooling_max_2d(nn):
    return Case(
        fn=functools.partial(nn.max_pool, window_shape=(2, 2), strides=(2, 2)),
        args=(data(2, 4, 4, 3),),
    )


@case
def pooling_max_same_unbatched(nn):
    return Case(
        fn=functools.partial(nn.max_pool, window_shape=(3,), padding="SAME"),
        args=(data(5, 2, seed=1),),
    )


@case
def pooling_max_pairs(nn):
    f = functools.partial(
        nn.max_pool, window_shape=(2, 3), strides=(1, 2), padding=((1, 0), (1, 1))
    )
    return Case(fn=f, args=(data(1, 3, 5, 2, seed=2),))


@case
def pooling_avg_valid(nn):
    return Case(
        fn=functools.partial(nn.avg_pool, window_shape=(2, 2)), args=(data(2, 3, 3, 2, seed=3),)
    )


@case
def pooling_avg_same_exclude_pad(nn):
    f = functools.partial(nn.avg_pool, window_shape=(3, 3), padding="SAME", count_include_pad=False)
    return Case(fn=f, args=(data(2, 4, 4, 1, seed=4),))


@case
def pooling_avg_1d_strided_pairs(nn):
    f = functools.partial(nn.avg_pool, window_shape=(3,), strides=(2,), padding=((1, 1),))
    return Case(fn=f, args=(data(2, 7, 2, seed=5),))


@case
def pooling_pool_custom_reduce(nn):
    f = functools.partial(
        nn.pool, init=0.0, reduce_fn=jax.lax.add, window_shape=(2,), strides=None, padding="VALID"
    )
    return Case(fn=f, args=(data(2, 5, 3, seed=6),))


@case
def pooling_pool_max_same(nn):
    f = functools.partial(
        nn.pool,
        init=-jnp.inf,
        reduce_fn=jax.lax.max,
        window_shape=(2, 2),
        strides=(1, 1),
        padding="SAME",
    )
    return Case(fn=f, args=(data(1, 3, 3, 2, seed=7),))


@case
def pooling_pool_unbatched_2d(nn):
    f = functools.partial(
        nn.pool,
        init=0.0,
        reduce_fn=jax.lax.add,
        window_shape=(2, 2),
        strides=(2, 1),
        padding=((0, 1), (1, 0)),
    )
    return Case(fn=f, args=(data(4, 3, 2, seed=8),))


# --- combinators and activations -------------------------------------------


@case
def combinators_sequential_mlp(nn):
    m = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)])
    return Case(m, (data(3, 5),), key(0))


@case
def combinators_sequential_tuple_passing(nn):
    m = nn.Sequential([lambda x: (x, x * 2), lambda a, b: a + b, nn.Dense(3), nn.LayerNorm()])
    return Case(m, (data(2, 4, seed=1),), key(1))


@case
def combinators_sequential_nested_dict(nn):
    inner = nn.Sequential([nn.Dense(3), nn.tanh])
    m = nn.Sequential([inner, lambda x: {"x": x}, lambda x: x * 2, nn.Dense(2, use_bias=False)])
    return Case(m, (data(2, 2, seed=2),), key(2))


@case
def activation_prelu_default(nn):
    return Case(nn.PReLU(), (data(3, 4),), key(0))


@case
def activation_prelu_slope(nn):
    return Case(nn.PReLU(negative_slope_init=0.2), (data(2, 3, seed=1),), key(1))


@case
def activation_prelu_bf16_param(nn):
    return Case(
        nn.PReLU(param_dtype=jnp.bfloat16, negative_slope_init=0.3), (data(5, seed=2),), key(2)
    )


# --- batch_apply ------------------------------------------------------------


@case
def batch_apply_dot(nn):
    return Case(fn=nn.BatchApply(jnp.dot), args=(data(2, 3, 4, seed=40), data(4, seed=41)))


@case
def batch_apply_three_dims_tree_scalar(nn):
    f = nn.BatchApply(lambda d, s: {"y": jnp.tanh(d["a"]) * s, "z": d["b"] + 1.0}, num_dims=3)
    tree = {"a": data(2, 2, 3, 4, seed=42), "b": data(2, 2, 3, seed=43)}
    return Case(fn=f, args=(tree, 2.0))


@case
def batch_apply_module(nn):
    # A layer that wants rank-2 input, run on a [time, batch, features] array.
    def fn(x):
        m = nn.Dense(3)
        variables = m.init(key(44), x[0])
        return nn.BatchApply(lambda y: m.apply(variables, y))(x)

    return Case(fn=fn, args=(data(4, 2, 5, seed=44),))


# --- weight and spectral norm (wrap a layer; live in normalization.py) -------


def _wrapped(nn, wrap, **call_kwargs):
    """A model calling ``wrap()`` (a wrapper around a layer) in its compact method."""

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return wrap()(x, **call_kwargs)

    return Net()


@case
def normalization_weightnorm_dense(nn):
    m = _wrapped(nn, lambda: nn.WeightNorm(nn.Dense(3, bias_init=inits.normal())))
    return Case(m, (data(2, 4, seed=50),), key(50))


@case
def normalization_weightnorm_conv_all_axes_no_filter(nn):
    wrap = lambda: nn.WeightNorm(nn.Conv(2, (2,)), feature_axes=None, variable_filter=None)
    return Case(_wrapped(nn, wrap), (data(2, 5, 3, seed=51),), key(51))


@case
def normalization_weightnorm_no_scale_bf16(nn):
    wrap = lambda: nn.WeightNorm(nn.Dense(2), use_scale=False, dtype=jnp.bfloat16)
    return Case(_wrapped(nn, wrap), (data(3, 2, seed=52),), key(52))


@case
def normalization_spectralnorm_dense_update(nn):
    wrap = lambda: nn.SpectralNorm(nn.Dense(3), n_steps=3)
    m = _wrapped(nn, wrap, update_stats=True)
    return Case(m, (data(2, 4, seed=53),), key(53), apply_kwargs={"mutable": ["batch_stats"]})


@case
def normalization_spectralnorm_conv_3d_kernel(nn):
    wrap = lambda: nn.SpectralNorm(nn.Conv(3, (2, 2)), collection_name="spectral")
    m = _wrapped(nn, wrap, update_stats=False)
    return Case(m, (data(1, 4, 4, 2, seed=54),), key(54))


@case
def normalization_spectralnorm_zero_steps(nn):
    wrap = lambda: nn.SpectralNorm(nn.Dense(2), n_steps=0)
    m = _wrapped(nn, wrap, update_stats=True)
    return Case(m, (data(2, 3, seed=55),), key(55), apply_kwargs={"mutable": True})


@case
def normalization_weightnorm_top_level(nn):
    return Case(nn.WeightNorm(nn.Dense(2)), (data(2, 3, seed=56),), key(56))


@case
def normalization_spectralnorm_top_level(nn):
    m = nn.SpectralNorm(nn.Dense(2))
    kw = {"update_stats": True}
    return Case(
        m, (data(2, 3, seed=57),), key(57), init_kwargs=kw, apply_kwargs={**kw, "mutable": True}
    )
