"""Linear layers: Dense, DenseGeneral, Einsum, Embed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import opt_einsum
from jax import lax

from minilinen import initializers
from minilinen.core.meta import AxisMetadata
from minilinen.errors import LayerConfigError, LayerInputError
from minilinen.layers.common import add_bias, canonicalize_tuple, merge_param, promote_dtype
from minilinen.module import Module, compact
from minilinen.typing import Array, Dtype, Initializer

__all__ = ["Dense", "DenseGeneral", "Einsum", "Embed", "default_kernel_init", "default_embed_init"]

default_kernel_init = initializers.lecun_normal()
default_embed_init = initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


class Dense(Module):
    """A linear map over the last axis: ``inputs @ kernel + bias``."""

    features: int
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    promote_dtype: Callable[..., list] = promote_dtype
    dot_general: Callable[..., Array] | None = None
    dot_general_cls: Any = None

    @compact
    def __call__(self, inputs: Array) -> Array:
        """Applies the map to ``inputs`` (any number of leading axes)."""
        kernel_shape = (jnp.shape(inputs)[-1], self.features)
        kernel, bias = kernel_and_bias(self, kernel_shape, (self.features,))
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        dot = pick_op(self.dot_general, self.dot_general_cls, lax.dot_general)
        y = dot(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())), precision=self.precision)
        return add_bias(y, bias)


def kernel_and_bias(mdl: Module, kernel_shape: tuple, bias_shape: tuple) -> tuple[Array, Any]:
    """Creates ``mdl``'s ``kernel`` and, if ``mdl.use_bias``, its ``bias`` (else None).

    Shared by the layers with ``kernel_init``, ``bias_init``, ``use_bias`` and
    ``param_dtype`` fields (Dense, Conv, the fused LSTM's gates).
    """
    kernel = mdl.param("kernel", mdl.kernel_init, kernel_shape, mdl.param_dtype)
    if not mdl.use_bias:
        return kernel, None
    return kernel, mdl.param("bias", mdl.bias_init, bias_shape, mdl.param_dtype)


def pick_op(fn: Callable | None, cls: Any, default: Callable) -> Callable[..., Array]:
    """A layer's primitive: a new ``cls()`` if given (an fp8 op), else ``fn`` or ``default``."""
    if cls is not None:
        return cls()
    return default if fn is None else fn


def _normalize_axes(axes: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    return tuple(sorted(a + ndim if a < 0 else a for a in axes))


class DenseGeneral(Module):
    """A linear map contracting any set of input axes into one or more feature axes."""

    features: int | Sequence[int]
    axis: int | Sequence[int] = -1
    batch_dims: Sequence[int] = ()
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    precision: Any = None
    promote_dtype: Callable[..., list] = promote_dtype
    dot_general: Callable[..., Array] | None = None
    dot_general_cls: Any = None

    @compact
    def __call__(self, inputs: Array) -> Array:
        """Contracts ``inputs`` over ``axis``, keeping ``batch_dims`` aligned with the kernel."""
        features = canonicalize_tuple(self.features)
        batch_dims = canonicalize_tuple(self.batch_dims)
        if batch_dims and set(batch_dims) != set(range(max(batch_dims) + 1)):
            raise LayerConfigError(
                f"DenseGeneral batch_dims {batch_dims} must be consecutive leading axes "
                f"starting at 0, e.g. (0,) or (0, 1)."
            )
        ndim = inputs.ndim
        axis = _normalize_axes(canonicalize_tuple(self.axis), ndim)
        batch_dims = _normalize_axes(batch_dims, ndim)
        n_batch = len(batch_dims)
        n_in = n_batch + len(axis)  # the kernel's leading axes, read from the input
        batch_shape = tuple(inputs.shape[a] for a in batch_dims)
        kernel_shape = batch_shape + tuple(inputs.shape[a] for a in axis) + features

        kernel = self.param(
            "kernel", _flat_init, self.kernel_init, n_in, kernel_shape, self.param_dtype
        )
        bias = None
        if self.use_bias:
            shape = batch_shape + features
            bias = self.param(
                "bias", _flat_init, self.bias_init, len(shape), shape, self.param_dtype
            )
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        dot = pick_op(self.dot_general, self.dot_general_cls, lax.dot_general)
        # The kernel's axes: the batch ones first, then the contracted ones.
        dims = ((axis, tuple(range(n_batch, n_in))), (batch_dims, tuple(range(n_batch))))
        out = dot(inputs, kernel, dims, precision=self.precision)
        if bias is not None:
            expanded = tuple(
                inputs.shape[a] if a in batch_dims else 1 for a in range(ndim) if a not in axis
            )
            out = out + jnp.reshape(bias, expanded + features)
        return out


def _flat_init(rng: Array, init: Initializer, split: int, shape: tuple, dtype: Dtype) -> Array:
    """Runs ``init`` on ``shape`` flattened to 2D at ``split`` (1D if it is the end).

    Initializers then see the (fan_in, fan_out) shape Flax gives them, so variance
    scaling computes the same fans and the bits match. A module-level function with
    hashable arguments lets the scope cache the parameter's abstract shape.
    """
    head, tail = int(np.prod(shape[:split])), int(np.prod(shape[split:]))
    flat = (head,) if split == len(shape) else (head, tail)
    value = init(rng, flat, dtype)
    if isinstance(value, AxisMetadata):  # e.g. nn.with_partitioning: reshape inside the box
        return value.replace_boxed(jnp.reshape(value.unbox(), shape))
    return jnp.reshape(value, shape)


class Einsum(Module):
    """A learnable kernel of shape ``shape`` contracted with the input by ``einsum_str``."""

    shape: Sequence[int]
    einsum_str: str | None = None
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    promote_dtype: Callable[..., list] = promote_dtype
    preferred_element_type: Dtype | None = None

    @compact
    def __call__(self, inputs: Array, einsum_str: str | None = None) -> Array:
        """Computes ``einsum(einsum_str, inputs, kernel) + bias``."""
        einsum_str = merge_param("einsum_str", self.einsum_str, einsum_str).replace(" ", "")
        if "->" not in einsum_str:
            raise LayerConfigError(
                f'`einsum_str` equation must be explicit and include "->". Got {einsum_str!r}; '
                "add '->' and the output axes."
            )
        if einsum_str.count(",") != 1:
            raise LayerConfigError(
                "`einsum_str` equation must have exactly two operands and therefore, exactly "
                f"one comma character, instead of {einsum_str.count(',')}. Got {einsum_str!r}; "
                "the operands are the input and the kernel."
            )
        kernel = self.param("kernel", self.kernel_init, tuple(self.shape), self.param_dtype)
        bias = None
        if self.use_bias:
            bias_shape, bias_bshape = _einsum_bias_shape(einsum_str, inputs, self.shape)
            bias = self.param("bias", self.bias_init, bias_shape, self.param_dtype)
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        y = jnp.einsum(
            einsum_str,
            inputs,
            kernel,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )
        if bias is not None:
            y = y + jnp.reshape(bias, bias_bshape)
        return y


def _einsum_bias_shape(
    eq: str, lhs: Array, kernel_shape: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Bias covers the kernel axes that survive into the output; others broadcast."""
    # opt_einsum (a JAX dependency) spells out any ellipsis with concrete letters.
    kernel = jax.ShapeDtypeStruct(tuple(kernel_shape), jnp.float32)
    operands, result, _ = opt_einsum.parser.parse_einsum_input((eq, lhs, kernel))
    rhs = operands.split(",")[1]
    where = {c: i for i, c in enumerate(rhs)}
    if len(where) != len(kernel_shape):
        raise LayerConfigError(
            f"Einsum kernel shape {tuple(kernel_shape)} has {len(kernel_shape)} axes but the "
            f"equation's kernel operand {rhs!r} names {len(where)}."
        )
    bias_shape = tuple(kernel_shape[where[c]] for c in result if c in where)
    broadcast = tuple(kernel_shape[where[c]] if c in where else 1 for c in result)
    return bias_shape, broadcast


class Embed(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``features``."""

    num_embeddings: int
    features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    embedding_init: Initializer = default_embed_init
    promote_dtype: Callable[..., list] = promote_dtype

    def setup(self) -> None:
        """Creates the ``embedding`` table."""
        shape = (self.num_embeddings, self.features)
        self.embedding = self.param("embedding", self.embedding_init, shape, self.param_dtype)

    def __call__(self, inputs: Array) -> Array:
        """Looks up the rows of ``embedding`` named by the integer ``inputs``."""
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise LayerInputError(
                f"Embed input must be integer indices, got dtype {inputs.dtype}; cast with "
                f"inputs.astype(jnp.int32)."
            )
        (embedding,) = self.promote_dtype(self.embedding, dtype=self.dtype, inexact=False)
        if self.num_embeddings == 1:
            return jnp.broadcast_to(embedding, inputs.shape + (self.features,))
        return jnp.take(embedding, inputs, axis=0)

    def attend(self, query: Array) -> Array:
        """Dot product of ``query`` with every embedding (e.g. tied output logits)."""
        query, embedding = self.promote_dtype(query, self.embedding, dtype=self.dtype)
        return jnp.dot(query, embedding.T)
