"""Layer golden cases, written once as functions of ``nn``.

``nn`` is ``flax.linen`` when ``make_golden_layers.py`` records the goldens and
``minilinen`` when ``tests/test_layers_golden.py`` replays them, so the model source
is literally the same. A case is either a module run (``init`` then ``apply`` on the
variables ``init`` returned) or a plain function call (``fn(*args, **kwargs)``).
Every case name starts with its layer kind (the file the layer lives in).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

inits = jax.nn.initializers


@dataclasses.dataclass
class Case:
    """One run: ``module.init(rngs, *args, **init_kwargs)`` then ``module.apply``; or ``fn``."""

    module: Any = None
    args: tuple = ()
    rngs: Any = None
    init_kwargs: dict = dataclasses.field(default_factory=dict)
    apply_kwargs: dict = dataclasses.field(default_factory=dict)
    apply_args: tuple | None = None
    fn: Callable | None = None
    # RNN lifts its cell through nn.scan in Flax, which hands the cell's params back
    # sorted by name; minilinen keeps creation order. Values and names still match.
    sorted_params: bool = False

    def call_args(self) -> tuple:
        """The positional arguments of ``apply`` (those of ``init`` unless given)."""
        return self.args if self.apply_args is None else self.apply_args


CASES: dict[str, Callable[[Any], Case]] = {}


def case(fn: Callable[[Any], Case]) -> Callable[[Any], Case]:
    """Register a case under its function name."""
    CASES[fn.__name__] = fn
    return fn


def key(seed: int = 0) -> jax.Array:
    """A typed PRNG key."""
    return jax.random.key(seed)


def data(*shape: int, seed: int = 0, dtype: Any = jnp.float32) -> jax.Array:
    """Normal inputs from NumPy, so they do not depend on the threefry setting."""
    return jnp.asarray(np.random.RandomState(seed).standard_normal(shape), dtype)


def ints(*shape: int, high: int, seed: int = 0) -> jax.Array:
    """Integer inputs in ``[0, high)``."""
    return jnp.asarray(np.random.RandomState(seed).randint(0, high, shape), jnp.int32)


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
    return Case(m, (ints(4, high=6),), key(1), apply_args=(data(2, 3),), apply_kwargs={"method": "attend"})


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
    return Case(m, (data(4, 3),), key(0), apply_args=(data(4, 3, seed=1) * 2 + 1,), apply_kwargs=_TRAIN)


@case
def normalization_batchnorm_eval_call_arg(nn):
    m = nn.BatchNorm(momentum=0.9, epsilon=1e-3)
    return Case(m, (data(4, 3), False), key(0), apply_args=(data(4, 3, seed=1), True))


@case
def normalization_batchnorm_axis1_noscale(nn):
    m = nn.BatchNorm(use_running_average=False, axis=1, momentum=0.8, use_scale=False)
    return Case(m, (data(2, 3, 4),), key(0), apply_args=(data(2, 3, 4, seed=2) - 3,), apply_kwargs=_TRAIN)


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


# --- attention --------------------------------------------------------------


def _qkv(seed: int, b: int = 2, q: int = 3, k: int = 4, h: int = 2, d: int = 3):
    return data(b, q, h, d, seed=seed), data(b, k, h, d, seed=seed + 1), data(b, k, h, d, seed=seed + 2)


@case
def attention_dpa_plain(nn):
    return Case(fn=nn.dot_product_attention, args=_qkv(0))


@case
def attention_dpa_mask_bias(nn):
    q, k, v = _qkv(3)
    mask = jnp.asarray(np.random.RandomState(9).rand(2, 1, 3, 4) > 0.3)
    bias = data(2, 2, 3, 4, seed=10)
    return Case(fn=functools.partial(nn.dot_product_attention, bias=bias, mask=mask), args=(q, k, v))


@case
def attention_dpa_dropout(nn):
    q, k, v = _qkv(6)
    f = functools.partial(nn.dot_product_attention, dropout_rng=key(5), dropout_rate=0.5)
    return Case(fn=f, args=(q, k, v))


@case
def attention_dpa_dropout_unbroadcast_bf16(nn):
    q, k, v = _qkv(9)
    f = functools.partial(
        nn.dot_product_attention,
        dropout_rng=key(6),
        dropout_rate=0.3,
        broadcast_dropout=False,
        dtype=jnp.bfloat16,
    )
    return Case(fn=f, args=(q, k, v))


@case
def attention_weights_plain(nn):
    q, k, _ = _qkv(12)
    return Case(fn=nn.dot_product_attention_weights, args=(q, k))


@case
def attention_weights_mask(nn):
    q, k, _ = _qkv(15)
    mask = jnp.asarray(np.random.RandomState(1).rand(2, 2, 3, 4) > 0.5)
    return Case(fn=functools.partial(nn.dot_product_attention_weights, mask=mask), args=(q, k))


@case
def attention_weights_dropout_fp32_softmax(nn):
    q, k, _ = _qkv(18)
    f = functools.partial(
        nn.dot_product_attention_weights,
        dropout_rng=key(7),
        dropout_rate=0.25,
        dtype=jnp.bfloat16,
        force_fp32_for_softmax=True,
    )
    return Case(fn=f, args=(q, k))


@case
def attention_mha_self(nn):
    return Case(nn.MultiHeadDotProductAttention(num_heads=2), (data(2, 3, 4),), key(0))


@case
def attention_mha_cross_mask(nn):
    m = nn.MultiHeadDotProductAttention(
        num_heads=2, qkv_features=8, out_features=5, bias_init=inits.normal(0.5)
    )
    q, kv = data(2, 3, 4, seed=1), data(2, 5, 6, seed=2)
    mask = nn.make_attention_mask(jnp.ones((2, 3)), jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1.0]]))
    return Case(m, (q, kv), key(1), init_kwargs={"mask": mask}, apply_kwargs={"mask": mask})


@case
def attention_mha_kv_separate_dropout(nn):
    m = nn.MultiHeadDotProductAttention(num_heads=1, dropout_rate=0.5, deterministic=False)
    q, k, v = data(1, 2, 3, seed=3), data(1, 4, 3, seed=4), data(1, 4, 3, seed=5)
    rngs = {"params": key(2), "dropout": key(3)}
    return Case(m, (q, k, v), rngs, apply_kwargs={"rngs": {"dropout": key(4)}})


@case
def attention_mha_normalize_qk_nobias_sow(nn):
    m = nn.MultiHeadDotProductAttention(num_heads=2, normalize_qk=True, use_bias=False)
    x = data(2, 3, 4, seed=6)
    return Case(
        m,
        (x,),
        key(5),
        apply_kwargs={"sow_weights": True, "mutable": ["intermediates"]},
    )


@case
def attention_mha_bf16_out_init(nn):
    m = nn.MultiHeadDotProductAttention(
        num_heads=2,
        dtype=jnp.bfloat16,
        out_kernel_init=inits.normal(0.2),
        out_bias_init=inits.normal(1.0),
    )
    return Case(m, (data(1, 3, 4, seed=7),), key(6))


@case
def attention_mha_decode_step(nn):
    m = nn.MultiHeadDotProductAttention(num_heads=2, decode=True)
    return Case(
        m,
        (data(2, 4, 4, seed=8),),
        key(7),
        apply_args=(data(2, 1, 4, seed=9),),
        apply_kwargs={"mutable": ["cache"]},
    )


@case
def attention_selfattention_basic(nn):
    return Case(nn.SelfAttention(num_heads=2), (data(2, 3, 4, seed=10),), key(8))


@case
def attention_selfattention_causal(nn):
    x = data(2, 4, 6, seed=11)
    mask = nn.make_causal_mask(jnp.ones((2, 4)))
    m = nn.SelfAttention(num_heads=3, qkv_features=6)
    return Case(m, (x, mask), key(9))


@case
def attention_selfattention_dropout(nn):
    m = nn.SelfAttention(num_heads=1, dropout_rate=0.4, broadcast_dropout=False)
    x = data(1, 3, 2, seed=12)
    return Case(
        m,
        (x,),
        key(10),
        init_kwargs={"deterministic": True},
        apply_kwargs={"deterministic": False, "rngs": {"dropout": key(11)}},
    )


@case
def attention_make_attention_mask(nn):
    q = jnp.asarray([[1, 1, 0], [1, 0, 0]])
    k = jnp.asarray([[1, 1, 1, 0], [1, 1, 0, 0]])
    return Case(fn=nn.make_attention_mask, args=(q, k))


@case
def attention_make_attention_mask_greater_extra(nn):
    q = jnp.asarray([[0, 1, 2]])
    k = jnp.asarray([[0, 1, 2, 3]])
    f = functools.partial(
        nn.make_attention_mask, pairwise_fn=jnp.greater, extra_batch_dims=1, dtype=jnp.int32
    )
    return Case(fn=f, args=(q, k))


@case
def attention_make_attention_mask_bool(nn):
    q = jnp.asarray([1.0, 0.0])
    k = jnp.asarray([1.0, 1.0, 0.0])
    return Case(fn=functools.partial(nn.make_attention_mask, dtype=jnp.bool_), args=(q, k))


@case
def attention_make_causal_mask(nn):
    return Case(fn=nn.make_causal_mask, args=(jnp.ones((2, 4)),))


@case
def attention_make_causal_mask_extra_bool(nn):
    f = functools.partial(nn.make_causal_mask, extra_batch_dims=2, dtype=jnp.bool_)
    return Case(fn=f, args=(jnp.ones((3,)),))


@case
def attention_make_causal_mask_3d(nn):
    return Case(fn=nn.make_causal_mask, args=(jnp.ones((2, 1, 3)),))


@case
def attention_combine_masks(nn):
    a = nn.make_causal_mask(jnp.ones((1, 3)))
    b = nn.make_attention_mask(jnp.ones((1, 3)), jnp.asarray([[1, 1, 0]]))
    return Case(fn=nn.combine_masks, args=(a, None, b))


@case
def attention_combine_masks_single_bool(nn):
    a = jnp.asarray([[True, False], [True, True]])
    return Case(fn=functools.partial(nn.combine_masks, dtype=jnp.bool_), args=(a,))


@case
def attention_combine_masks_three(nn):
    r = np.random.RandomState(3)
    a, b, c = (jnp.asarray(r.rand(2, 1, 3, 3) > 0.3) for _ in range(3))
    return Case(fn=nn.combine_masks, args=(a, b, c))


# --- recurrent --------------------------------------------------------------


def _cell_case(nn, cell, x, seed, two=False, carry_seed=None):
    carry = cell.initialize_carry(key(100), x.shape)
    if carry_seed is not None:
        shape = x.shape[:-1] + (cell.features,)
        carry = (data(*shape, seed=carry_seed), data(*shape, seed=carry_seed + 1)) if two else data(
            *shape, seed=carry_seed
        )
    return Case(cell, (carry, x), key(seed))


@case
def recurrent_lstm_zero_carry(nn):
    return _cell_case(nn, nn.LSTMCell(3), data(2, 4), 0, two=True)


@case
def recurrent_lstm_carry(nn):
    return _cell_case(nn, nn.LSTMCell(2, bias_init=inits.normal(1.0)), data(3, 5, seed=1), 1, True, 2)


@case
def recurrent_lstm_custom_gates(nn):
    cell = nn.LSTMCell(4, gate_fn=jax.nn.hard_sigmoid, activation_fn=jax.nn.relu)
    return _cell_case(nn, cell, data(1, 2, 3, seed=3), 2, True, 4)


@case
def recurrent_optimized_lstm_zero_carry(nn):
    return _cell_case(nn, nn.OptimizedLSTMCell(3), data(2, 4), 3, two=True)


@case
def recurrent_optimized_lstm_carry(nn):
    cell = nn.OptimizedLSTMCell(2, bias_init=inits.normal(1.0))
    return _cell_case(nn, cell, data(3, 5, seed=5), 4, True, 6)


@case
def recurrent_optimized_lstm_bf16(nn):
    return _cell_case(nn, nn.OptimizedLSTMCell(3, dtype=jnp.bfloat16), data(2, 2, seed=7), 5, True, 8)


@case
def recurrent_gru_zero_carry(nn):
    return _cell_case(nn, nn.GRUCell(3), data(2, 4), 6)


@case
def recurrent_gru_carry(nn):
    return _cell_case(nn, nn.GRUCell(2, bias_init=inits.normal(1.0)), data(3, 5, seed=9), 7, False, 10)


@case
def recurrent_gru_param_f16(nn):
    cell = nn.GRUCell(
        3, param_dtype=jnp.float16, carry_init=inits.ones, recurrent_kernel_init=inits.normal(0.5)
    )
    return _cell_case(nn, cell, data(2, 3, seed=11), 8)


@case
def recurrent_simple_zero_carry(nn):
    return _cell_case(nn, nn.SimpleCell(3), data(2, 4), 9)


@case
def recurrent_simple_residual(nn):
    cell = nn.SimpleCell(3, residual=True, bias_init=inits.normal(1.0))
    return _cell_case(nn, cell, data(2, 3, seed=12), 10, False, 13)


@case
def recurrent_simple_relu(nn):
    return _cell_case(nn, nn.SimpleCell(2, activation_fn=jax.nn.relu), data(4, 3, seed=14), 11, False, 15)


@case
def recurrent_rnn_lstm(nn):
    return Case(nn.RNN(nn.LSTMCell(3)), (data(2, 5, 4),), key(0), sorted_params=True)


@case
def recurrent_rnn_gru_time_major_carry(nn):
    m = nn.RNN(nn.GRUCell(2), time_major=True, return_carry=True)
    return Case(m, (data(4, 3, 2, seed=1),), key(1), sorted_params=True)


@case
def recurrent_rnn_reverse_keep_order(nn):
    m = nn.RNN(nn.SimpleCell(3), reverse=True, keep_order=True)
    return Case(m, (data(2, 4, 3, seed=2),), key(2), sorted_params=True)


@case
def recurrent_rnn_seq_lengths(nn):
    m = nn.RNN(nn.OptimizedLSTMCell(2), return_carry=True)
    lengths = jnp.asarray([2, 5, 3])
    kw = {"seq_lengths": lengths}
    return Case(m, (data(3, 5, 2, seed=3),), key(3), init_kwargs=kw, apply_kwargs=kw, sorted_params=True)


@case
def recurrent_rnn_initial_carry_reverse_lengths(nn):
    m = nn.RNN(nn.GRUCell(3), reverse=True)
    carry = data(2, 3, seed=5)
    kw = {"initial_carry": carry, "seq_lengths": jnp.asarray([3, 1])}
    return Case(m, (data(2, 3, 2, seed=4),), key(4), init_kwargs=kw, apply_kwargs=kw, sorted_params=True)


@case
def recurrent_bidirectional_concat(nn):
    m = nn.Bidirectional(nn.RNN(nn.LSTMCell(3)), nn.RNN(nn.GRUCell(3)))
    return Case(m, (data(2, 4, 2),), key(5), sorted_params=True)


@case
def recurrent_bidirectional_lengths_carry(nn):
    m = nn.Bidirectional(nn.RNN(nn.SimpleCell(2)), nn.RNN(nn.SimpleCell(2)), return_carry=True)
    kw = {"seq_lengths": jnp.asarray([4, 2])}
    return Case(m, (data(2, 4, 3, seed=6),), key(6), init_kwargs=kw, apply_kwargs=kw, sorted_params=True)


@case
def recurrent_bidirectional_sum_time_major(nn):
    m = nn.Bidirectional(
        nn.RNN(nn.GRUCell(2)), nn.RNN(nn.GRUCell(2)), merge_fn=jnp.add, time_major=True
    )
    return Case(m, (data(3, 2, 2, seed=7),), key(7), sorted_params=True)


# --- stochastic -------------------------------------------------------------


@case
def stochastic_dropout_half(nn):
    m = nn.Dropout(0.5, deterministic=False)
    return Case(m, (data(3, 4),), key(0), apply_kwargs={"rngs": {"dropout": key(1)}})


@case
def stochastic_dropout_broadcast(nn):
    m = nn.Dropout(0.3, broadcast_dims=(0, 2))
    x = data(2, 3, 4, seed=1)
    return Case(m, (x, True), key(0), apply_args=(x, False), apply_kwargs={"rngs": {"dropout": key(2)}})


@case
def stochastic_dropout_deterministic(nn):
    return Case(nn.Dropout(0.5), (data(2, 2, seed=2),), key(0), init_kwargs={"deterministic": True},
                apply_kwargs={"deterministic": True})


@case
def stochastic_dropout_rate_one(nn):
    m = nn.Dropout(1.0, deterministic=False)
    return Case(m, (data(2, 2, seed=3),), key(0), apply_kwargs={"rngs": {"dropout": key(3)}})


@case
def stochastic_dropout_custom_collection(nn):
    m = nn.Dropout(0.25, deterministic=False, rng_collection="noise")
    return Case(m, (data(5, seed=4),), {"params": key(0), "noise": key(4)},
                apply_kwargs={"rngs": {"noise": key(5)}})


# --- pooling ----------------------------------------------------------------


@case
def pooling_max_2d(nn):
    return Case(fn=functools.partial(nn.max_pool, window_shape=(2, 2), strides=(2, 2)), args=(data(2, 4, 4, 3),))


@case
def pooling_max_same_unbatched(nn):
    return Case(fn=functools.partial(nn.max_pool, window_shape=(3,), padding="SAME"), args=(data(5, 2, seed=1),))


@case
def pooling_max_pairs(nn):
    f = functools.partial(nn.max_pool, window_shape=(2, 3), strides=(1, 2), padding=((1, 0), (1, 1)))
    return Case(fn=f, args=(data(1, 3, 5, 2, seed=2),))


@case
def pooling_avg_valid(nn):
    return Case(fn=functools.partial(nn.avg_pool, window_shape=(2, 2)), args=(data(2, 3, 3, 2, seed=3),))


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
    f = functools.partial(nn.pool, init=0.0, reduce_fn=jax.lax.add, window_shape=(2,), strides=None,
                          padding="VALID")
    return Case(fn=f, args=(data(2, 5, 3, seed=6),))


@case
def pooling_pool_max_same(nn):
    f = functools.partial(nn.pool, init=-jnp.inf, reduce_fn=jax.lax.max, window_shape=(2, 2),
                          strides=(1, 1), padding="SAME")
    return Case(fn=f, args=(data(1, 3, 3, 2, seed=7),))


@case
def pooling_pool_unbatched_2d(nn):
    f = functools.partial(nn.pool, init=0.0, reduce_fn=jax.lax.add, window_shape=(2, 2),
                          strides=(2, 1), padding=((0, 1), (1, 0)))
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
    return Case(nn.PReLU(param_dtype=jnp.bfloat16, negative_slope_init=0.3), (data(5, seed=2),), key(2))
