"""Attention: dot-product attention, multi-head attention with a decode cache, masks."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random

from minilinen import initializers
from minilinen.errors import AttentionShapeError, LayerConfigError, LayerInputError, NumHeadsError
from minilinen.layers.common import merge_param, promote_dtype
from minilinen.layers.linear import DenseGeneral, default_kernel_init
from minilinen.layers.normalization import LayerNorm
from minilinen.module import Module, compact
from minilinen.typing import Array, Dtype, Initializer

__all__ = [
    "dot_product_attention_weights",
    "dot_product_attention",
    "MultiHeadDotProductAttention",
    "MultiHeadAttention",
    "SelfAttention",
    "make_attention_mask",
    "make_causal_mask",
    "combine_masks",
]


def _einsum_fn(precision: Any, dot_general: Callable[..., Array] | None) -> Callable[..., Array]:
    return functools.partial(
        jnp.einsum, precision=precision, _dot_general=dot_general or lax.dot_general
    )


def dot_product_attention_weights(
    query: Array,
    key: Array,
    bias: Array | None = None,
    mask: Array | None = None,
    broadcast_dropout: bool = True,
    dropout_rng: Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = False,
    dtype: Dtype | None = None,
    precision: Any = None,
    module: Module | None = None,
    force_fp32_for_softmax: bool = False,
    einsum_dot_general: Callable[..., Array] | None = None,
    einsum: Callable[..., Array] | None = None,
) -> Array:
    """Softmax attention weights ``[..., heads, q_len, kv_len]`` of ``query`` against ``key``.

    Args:
      query: ``[..., q_len, heads, depth]``.
      key: ``[..., kv_len, heads, depth]``.
      mask: broadcastable to the weights; False entries get no attention.
      module: if given, the weights are sown into its ``intermediates``.
    """
    if (precision is not None or einsum_dot_general is not None) and einsum is not None:
        raise LayerConfigError(
            "precision/einsum_dot_general and einsum (dot_product_attention's "
            "qk_attn_weights_einsum) are mutually exclusive; pass only one."
        )
    if einsum is None:
        einsum = _einsum_fn(precision, einsum_dot_general)
    query, key = promote_dtype(query, key, dtype=dtype)
    dtype = query.dtype
    _check_qkv(query, key)
    # Flax divides by jnp.sqrt(depth) in the default float type (float64 under x64): the
    # float64 sqrt rounded to that type is the same constant, made on the host.
    query = query / np.asarray(np.sqrt(query.shape[-1]), jnp.result_type(float)).astype(dtype)
    weights = einsum("...qhd,...khd->...hqk", query, key)
    if bias is not None:
        weights = weights + bias
    if mask is not None:
        weights = jnp.where(mask, weights, jnp.finfo(dtype).min)
    if force_fp32_for_softmax and dtype != jnp.float32:
        weights = jax.nn.softmax(weights.astype(jnp.float32))
    else:
        # astype returns its operand unchanged when the dtype already matches.
        weights = jax.nn.softmax(weights).astype(dtype)
    if module is not None:
        module.sow("intermediates", "attention_weights", weights)
    if not deterministic and dropout_rate > 0.0:
        keep_prob = 1.0 - dropout_rate
        # Broadcast dropout shares one keep-mask across the batch and head axes.
        shape = (1,) * (key.ndim - 2) + weights.shape[-2:] if broadcast_dropout else weights.shape
        keep = random.bernoulli(dropout_rng, keep_prob, shape)
        weights = weights * (keep.astype(dtype) / jnp.asarray(keep_prob, dtype=dtype))
    return weights


def _check_qkv(query: Array, key: Array, value: Array | None = None) -> None:
    shapes = [query.shape, key.shape] + ([] if value is None else [value.shape])
    ok = (
        min(len(s) for s in shapes) >= 3
        # One rank, one set of batch axes and one number of heads.
        and len({(len(s), s[:-3], s[-2]) for s in shapes}) == 1
        and query.shape[-1] == key.shape[-1]
        and (value is None or key.shape[-3] == value.shape[-3])
    )
    if not ok:
        names = "query, key" + ("" if value is None else ", value")
        raise AttentionShapeError(
            f"Attention inputs ({names}) must be shaped [..., length, heads, depth] with "
            f"equal batch axes and heads, equal query/key depth and equal key/value "
            f"length; got {', '.join(str(s) for s in shapes)}."
        )


def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    bias: Array | None = None,
    mask: Array | None = None,
    broadcast_dropout: bool = True,
    dropout_rng: Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = False,
    dtype: Dtype | None = None,
    precision: Any = None,
    module: Module | None = None,
    force_fp32_for_softmax: bool = False,
    einsum_dot_general: Callable[..., Array] | None = None,
    qk_attn_weights_einsum: Callable[..., Array] | None = None,
    attn_weights_value_einsum: Callable[..., Array] | None = None,
) -> Array:
    """Attention output ``[..., q_len, heads, depth_v]``: weights times ``value``."""
    if (qk_attn_weights_einsum is None) != (attn_weights_value_einsum is None):
        raise LayerConfigError(
            "qk_attn_weights_einsum and attn_weights_value_einsum must be given together."
        )
    query, key, value = promote_dtype(query, key, value, dtype=dtype)
    _check_qkv(query, key, value)
    weights = dot_product_attention_weights(
        query, key, bias, mask, broadcast_dropout, dropout_rng, dropout_rate, deterministic,
        query.dtype, precision, module, force_fp32_for_softmax, einsum_dot_general,
        qk_attn_weights_einsum,
    )  # fmt: skip
    if attn_weights_value_einsum is None:
        attn_weights_value_einsum = _einsum_fn(precision, einsum_dot_general)
    return attn_weights_value_einsum("...hqk,...khd->...qhd", weights, value)


@functools.lru_cache(maxsize=256)
def _parameter_names(fn: Callable[..., Any]) -> frozenset[str]:
    """The names in ``fn``'s signature, computed once per attention function."""
    return frozenset(inspect.signature(fn).parameters)


_INPUTS_KV_DEPRECATED = (
    "The inputs_kv arg will be deprecated soon; pass inputs_k and inputs_v instead."
)
_MASK_AS_VALUE = (
    "inputs_v has shape {}, which looks like a mask: the function signature of "
    "MultiHeadDotProductAttention's `__call__` method has changed to `__call__(inputs_q, "
    "inputs_k=None, inputs_v=None, *, inputs_kv=None, mask=None, deterministic=None)`; "
    "pass the mask as mask=..."
)


class MultiHeadDotProductAttention(Module):
    """Multi-head attention: project q/k/v, attend per head, project back."""

    num_heads: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    qkv_features: int | None = None
    out_features: int | None = None
    broadcast_dropout: bool = True
    dropout_rate: float = 0.0
    deterministic: bool | None = None
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    out_kernel_init: Initializer | None = None
    bias_init: Initializer = initializers.zeros_init()
    out_bias_init: Initializer | None = None
    use_bias: bool = True
    attention_fn: Callable[..., Array] = dot_product_attention
    decode: bool = False
    normalize_qk: bool = False
    force_fp32_for_softmax: bool = False
    qkv_dot_general: Callable[..., Array] | None = None
    out_dot_general: Callable[..., Array] | None = None
    qkv_dot_general_cls: Any = None
    out_dot_general_cls: Any = None
    qk_attn_weights_einsum_cls: Callable[..., Callable[..., Array]] | None = None
    attn_weights_value_einsum_cls: Callable[..., Callable[..., Array]] | None = None

    @compact
    def __call__(
        self,
        inputs_q: Array,
        inputs_k: Array | None = None,
        inputs_v: Array | None = None,
        *,
        inputs_kv: Array | None = None,
        mask: Array | None = None,
        deterministic: bool | None = None,
        dropout_rng: Array | None = None,
        sow_weights: bool = False,
    ) -> Array:
        """Attends from ``inputs_q`` to ``inputs_k``/``inputs_v`` (default: self-attention).

        Args:
          inputs_q: ``[..., q_len, features]``.
          inputs_k: keys ``[..., kv_len, features]``; defaults to ``inputs_q``.
          inputs_v: values; defaults to ``inputs_k``.
          inputs_kv: older spelling for ``inputs_k = inputs_v``.
          mask: ``[..., heads or 1, q_len, kv_len]``; False entries are masked out.
          sow_weights: store the attention weights in ``intermediates``.
        """
        if inputs_kv is not None:
            if inputs_k is not None or inputs_v is not None:
                raise LayerConfigError(
                    "If either `inputs_k` or `inputs_v` is not None, `inputs_kv` must be None: "
                    "pass either inputs_kv or inputs_k/inputs_v (preferred), not both."
                )
            inputs_k = inputs_v = inputs_kv
            warnings.warn(_INPUTS_KV_DEPRECATED, DeprecationWarning, stacklevel=2)
        elif inputs_k is None and inputs_v is not None:
            raise LayerConfigError(
                "`inputs_k` cannot be None if `inputs_v` is not None. To use one array "
                "for both, pass it as inputs_k."
            )
        elif inputs_v is not None and inputs_v.shape[-1] == inputs_v.shape[-2]:
            # Likely a mask passed positionally, as the pre-0.7.4 signature took it.
            warnings.warn(_MASK_AS_VALUE.format(inputs_v.shape), DeprecationWarning, stacklevel=2)
        inputs_k = inputs_q if inputs_k is None else inputs_k
        inputs_v = inputs_k if inputs_v is None else inputs_v

        qkv_features = self.qkv_features or inputs_q.shape[-1]
        if qkv_features % self.num_heads:
            raise NumHeadsError(
                f"qkv_features ({qkv_features}) must be divisible by num_heads ({self.num_heads})."
            )
        dense = functools.partial(
            DenseGeneral,  # over the last axis (its default)
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            features=(self.num_heads, qkv_features // self.num_heads),
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            use_bias=self.use_bias,
            precision=self.precision,
            dot_general=self.qkv_dot_general,
            dot_general_cls=self.qkv_dot_general_cls,
        )
        query = dense(name="query")(inputs_q)
        key = dense(name="key")(inputs_k)
        value = dense(name="value")(inputs_v)
        if self.normalize_qk:
            ln = functools.partial(
                LayerNorm, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype
            )
            query = ln(name="query_ln")(query)
            key = ln(name="key_ln")(key)

        if self.decode:
            key, value, mask = self._decode_step(query, key, value, mask)

        m_deterministic = True  # deterministic is needed (and merged) only with dropout
        if self.dropout_rate > 0.0:
            m_deterministic = merge_param("deterministic", self.deterministic, deterministic)
            if not m_deterministic and dropout_rng is None:
                dropout_rng = self.make_rng("dropout")

        build = lambda cls: cls() if cls else None  # each einsum factory is optional
        kwargs = {
            "mask": mask,
            "dropout_rng": dropout_rng,
            "dropout_rate": self.dropout_rate,
            "broadcast_dropout": self.broadcast_dropout,
            "deterministic": m_deterministic,
            "dtype": self.dtype,
            "precision": self.precision,
            "force_fp32_for_softmax": self.force_fp32_for_softmax,
            "qk_attn_weights_einsum": build(self.qk_attn_weights_einsum_cls),
            "attn_weights_value_einsum": build(self.attn_weights_value_einsum_cls),
        }
        fn = self.attention_fn
        if fn is not dot_product_attention:
            # As Flax, a custom function gets only the keywords its signature names
            # (none of them through a **kwargs catch-all).
            accepted = _parameter_names(fn)
            kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        if sow_weights:
            kwargs["module"] = self
        x = fn(query, key, value, **kwargs)
        return dense(
            features=self.out_features or inputs_q.shape[-1],
            axis=(-2, -1),
            kernel_init=self.out_kernel_init or self.kernel_init,
            bias_init=self.out_bias_init or self.bias_init,
            dot_general=self.out_dot_general,
            dot_general_cls=self.out_dot_general_cls,
            name="out",
        )(x)

    def _decode_step(
        self, query: Array, key: Array, value: Array, mask: Array | None
    ) -> tuple[Array, Array, Array | None]:
        """Writes this step's key/value into the ``cache`` and masks future positions."""
        initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
        if not initialized:
            # The first call only sizes the cache (max length = this call's length).
            return key, value, mask
        *batch_dims, max_length, num_heads, depth = cached_key.value.shape
        expected = (*batch_dims, 1, num_heads, depth)
        if expected != query.shape:
            raise LayerInputError(
                f"Autoregressive decoding takes one token per call: expected query shape "
                f"{expected}, got {query.shape}."
            )
        index = cache_index.value
        # dynamic_update_slice needs one index dtype (int64 Python zeros break under x64).
        zero = jnp.array(0, dtype=index.dtype)
        start = (zero,) * len(batch_dims) + (index, zero, zero)
        key = lax.dynamic_update_slice(cached_key.value, key, start)
        value = lax.dynamic_update_slice(cached_value.value, value, start)
        cached_key.value = key
        cached_value.value = value
        cache_index.value = index + 1
        visible = jnp.broadcast_to(jnp.arange(max_length) <= index, (*batch_dims, 1, 1, max_length))
        return key, value, combine_masks(mask, visible)


class MultiHeadAttention(MultiHeadDotProductAttention):
    """``MultiHeadDotProductAttention`` under its other name (autonamed by this class)."""


class SelfAttention(MultiHeadDotProductAttention):
    """Multi-head self-attention: ``inputs_q`` attends to itself."""

    @compact
    def __call__(  # type: ignore[override]
        self,
        inputs_q: Array,
        mask: Array | None = None,
        deterministic: bool | None = None,
        dropout_rng: Array | None = None,
        sow_weights: bool = False,
    ) -> Array:
        """Self-attention over ``inputs_q``."""
        return super().__call__(
            inputs_q,
            mask=mask,
            deterministic=deterministic,
            dropout_rng=dropout_rng,
            sow_weights=sow_weights,
        )


def make_attention_mask(
    query_input: Array,
    key_input: Array,
    pairwise_fn: Callable[..., Any] = jnp.multiply,
    extra_batch_dims: int = 0,
    dtype: Dtype = jnp.float32,
) -> Array:
    """A ``[batch..., 1, q_len, kv_len]`` mask from per-position query and key values."""
    mask = pairwise_fn(jnp.expand_dims(query_input, axis=-1), jnp.expand_dims(key_input, axis=-2))
    mask = jnp.expand_dims(mask, axis=-3)
    mask = jnp.expand_dims(mask, axis=tuple(range(extra_batch_dims)))
    return mask.astype(dtype)


def make_causal_mask(x: Array, extra_batch_dims: int = 0, dtype: Dtype = jnp.float32) -> Array:
    """A mask letting position ``i`` attend to positions ``<= i`` of ``x``'s last axis."""
    idxs = jnp.broadcast_to(jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape)
    return make_attention_mask(idxs, idxs, jnp.greater_equal, extra_batch_dims, dtype)


def combine_masks(*masks: Array | None, dtype: Dtype = jnp.float32) -> Array | None:
    """The logical AND of the non-None masks (all of one rank), or None."""
    masks = [m for m in masks if m is not None]
    if not masks:
        return None
    if len({m.ndim for m in masks}) != 1:
        raise AttentionShapeError(
            f"combine_masks needs masks of one rank, got ranks {[m.ndim for m in masks]}."
        )
    return functools.reduce(jnp.logical_and, masks).astype(dtype)
