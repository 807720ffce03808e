"""Convolutions: Conv (1-3 spatial dims, grouped, dilated), ConvLocal and ConvTranspose."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from minilinen import initializers
from minilinen.errors import LayerConfigError, LayerNotSupportedError
from minilinen.layers.common import add_bias, canonicalize_tuple, promote_dtype
from minilinen.layers.linear import default_kernel_init, kernel_and_bias, pick_op
from minilinen.module import Module, compact, nowrap
from minilinen.typing import Array, Dtype, Initializer

__all__ = ["Conv", "ConvLocal", "ConvTranspose", "canonicalize_padding"]

PaddingLike = str | int | Sequence[int | tuple[int, int]]


def canonicalize_padding(padding: PaddingLike, rank: int) -> str | list[tuple[int, int]]:
    """A padding string passes through; ints and pairs become ``rank`` (low, high) pairs."""
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    if isinstance(padding, Sequence) and len(padding) == rank:
        pairs = [(p, p) if isinstance(p, int) else p for p in padding]
        if all(isinstance(p, tuple | list) and len(p) == 2 for p in pairs):
            return [tuple(p) for p in pairs]
    raise LayerConfigError(
        f"Invalid padding {padding!r}: use a string ('SAME', 'VALID', 'CIRCULAR', 'REFLECT', "
        f"'CAUSAL'), an int, or a sequence of {rank} ints or (low, high) pairs."
    )


@functools.cache
def _dimension_numbers(ndim: int) -> lax.ConvDimensionNumbers:
    # Inputs are (N, *spatial, C); kernels are (*spatial, C_in, C_out).
    lhs = (0, ndim - 1) + tuple(range(1, ndim - 1))
    rhs = (ndim - 1, ndim - 2) + tuple(range(0, ndim - 2))
    return lax.ConvDimensionNumbers(lhs, rhs, lhs)


def _broadcast(x: int | Sequence[int] | None, rank: int) -> tuple[int, ...]:
    if x is None:
        return (1,) * rank
    if isinstance(x, int):
        return (x,) * rank
    return tuple(x)


def _flatten_batch(inputs: Array, rank: int) -> tuple[Array, tuple[int, ...] | None]:
    """Folds all batch axes (zero, one or many) into exactly one."""
    n_batch = inputs.ndim - (rank + 1)
    if n_batch == 1:
        return inputs, None
    batch_shape = inputs.shape[:n_batch]
    return jnp.reshape(inputs, (-1,) + inputs.shape[n_batch:]), batch_shape


class Conv(Module):
    """An N-d convolution over inputs shaped ``(*batch, *spatial, features)``."""

    features: int
    kernel_size: int | Sequence[int]
    strides: None | int | Sequence[int] = 1
    padding: PaddingLike = "SAME"
    input_dilation: None | int | Sequence[int] = 1
    kernel_dilation: None | int | Sequence[int] = 1
    feature_group_count: int = 1
    use_bias: bool = True
    mask: Array | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    promote_dtype: Callable[..., list] = promote_dtype
    conv_general_dilated: Callable[..., Array] | None = None
    conv_general_dilated_cls: Any = None

    @compact
    def __call__(self, inputs: Array) -> Array:
        """Convolves ``inputs`` with the kernel and adds the bias."""
        kernel_size = canonicalize_tuple(self.kernel_size)
        rank = len(kernel_size)
        inputs, batch_shape = _flatten_batch(inputs, rank)
        strides = _broadcast(self.strides, rank)
        input_dilation = _broadcast(self.input_dilation, rank)
        kernel_dilation = _broadcast(self.kernel_dilation, rank)
        padding = canonicalize_padding(self.padding, rank)
        if padding in ("CIRCULAR", "REFLECT"):
            dilated = [(k - 1) * d + 1 for k, d in zip(kernel_size, kernel_dilation)]
            pads = [(0, 0)] + [((k - 1) // 2, k // 2) for k in dilated] + [(0, 0)]
            mode = "wrap" if padding == "CIRCULAR" else "reflect"
            inputs = jnp.pad(inputs, pads, mode=mode)
            padding = "VALID"
        elif padding == "CAUSAL":
            if rank != 1:
                raise LayerConfigError(
                    f"padding='CAUSAL' works only for 1D convolutions, got kernel_size "
                    f"{kernel_size}."
                )
            inputs = jnp.pad(
                inputs, [(0, 0), (kernel_dilation[0] * (kernel_size[0] - 1), 0), (0, 0)]
            )
            padding = "VALID"

        in_features = inputs.shape[-1]
        dims = _dimension_numbers(inputs.ndim)
        conv_args = dict(
            lhs_dilation=input_dilation, rhs_dilation=kernel_dilation, dimension_numbers=dims
        )
        if self.shared_weights:
            if in_features % self.feature_group_count:
                raise LayerConfigError(
                    f"Conv input has {in_features} features, not divisible by "
                    f"feature_group_count={self.feature_group_count}."
                )
            kernel_shape = kernel_size + (in_features // self.feature_group_count, self.features)
            bias_shape = (self.features,)
        else:
            if self.feature_group_count != 1:
                raise LayerNotSupportedError(
                    f"ConvLocal (lax.conv_general_dilated_local) needs feature_group_count=1, "
                    f"got {self.feature_group_count}."
                )
            # One kernel per output position: the output's spatial shape sizes it.
            standard = self._conv_fn()
            out = jax.eval_shape(
                lambda lhs, rhs: standard(lhs, rhs, strides, padding, **conv_args),
                inputs,
                jax.ShapeDtypeStruct(kernel_size + (in_features, self.features), inputs.dtype),
            ).shape
            kernel_shape = out[1:-1] + (int(np.prod(kernel_size)) * in_features, self.features)
            bias_shape = out[1:]
        inputs, kernel, bias = _params(self, inputs, kernel_shape, bias_shape)
        # Made after the parameters, as in Flax: a conv_general_dilated_cls module is named then.
        if self.shared_weights:
            conv = functools.partial(self._conv_fn(), feature_group_count=self.feature_group_count)
        else:
            conv = functools.partial(lax.conv_general_dilated_local, filter_shape=kernel_size)
        y = conv(inputs, kernel, strides, padding, **conv_args, precision=self.precision)
        return _finish(y, bias, batch_shape)

    @property
    def shared_weights(self) -> bool:
        """One kernel for every position (True) or one per output position (ConvLocal)."""
        return True

    @nowrap
    def _conv_fn(self) -> Callable[..., Array]:
        fn, cls = self.conv_general_dilated, self.conv_general_dilated_cls
        return pick_op(fn, cls, lax.conv_general_dilated)


class ConvLocal(Conv):
    """A convolution whose kernel is not shared: each output position has its own."""

    @property
    def shared_weights(self) -> bool:
        """Never: the kernel is ``(*out_spatial, prod(kernel_size) * in_features, features)``."""
        return False


def _params(
    mdl: Module, inputs: Array, kernel_shape: tuple, bias_shape: tuple
) -> tuple[Array, Array, Array | None]:
    """Creates the (masked) kernel and the bias, cast with ``inputs`` to the compute dtype."""
    if mdl.mask is not None and mdl.mask.shape != kernel_shape:
        raise LayerConfigError(
            f"{type(mdl).__name__} mask has shape {mdl.mask.shape} but the kernel has shape "
            f"{kernel_shape}."
        )
    kernel, bias = kernel_and_bias(mdl, kernel_shape, bias_shape)
    if mdl.mask is not None:
        kernel = kernel * mdl.mask
    return mdl.promote_dtype(inputs, kernel, bias, dtype=mdl.dtype)


def _finish(y: Array, bias: Array | None, batch_shape: tuple[int, ...] | None) -> Array:
    """Adds the bias and restores the batch axes ``_flatten_batch`` folded."""
    y = add_bias(y, bias)
    return y if batch_shape is None else jnp.reshape(y, batch_shape + y.shape[1:])


class ConvTranspose(Module):
    """The gradient of a convolution: upsamples by ``strides``."""

    features: int
    kernel_size: int | Sequence[int]
    strides: Sequence[int] | None = None
    padding: PaddingLike = "SAME"
    kernel_dilation: Sequence[int] | None = None
    use_bias: bool = True
    mask: Array | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    transpose_kernel: bool = False
    promote_dtype: Callable[..., list] = promote_dtype
    preferred_element_type: Dtype | None = None

    @compact
    def __call__(self, inputs: Array) -> Array:
        """Applies the transposed convolution and adds the bias."""
        kernel_size = canonicalize_tuple(self.kernel_size)
        rank = len(kernel_size)
        inputs, batch_shape = _flatten_batch(inputs, rank)
        strides = _broadcast(self.strides, rank)
        kernel_dilation = _broadcast(self.kernel_dilation, rank)
        in_out = (inputs.shape[-1], self.features)  # swapped in a transpose_kernel kernel
        kernel_shape = kernel_size + (in_out[::-1] if self.transpose_kernel else in_out)
        padding = canonicalize_padding(self.padding, rank)
        circular = padding == "CIRCULAR"  # a VALID convolution, folded onto the torus below
        inputs, kernel, bias = _params(self, inputs, kernel_shape, (self.features,))
        y = lax.conv_transpose(
            inputs,
            kernel,
            strides,
            "VALID" if circular else padding,
            rhs_dilation=kernel_dilation,
            transpose_kernel=self.transpose_kernel,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )
        if circular:
            y = _wrap_circular(y, inputs.shape[1:-1], strides, self.transpose_kernel)
        return _finish(y, bias, batch_shape)


def _wrap_circular(
    y: Array, in_spatial: Sequence[int], strides: Sequence[int], transpose_kernel: bool
) -> Array:
    """Folds a VALID transposed convolution onto a torus of size ``input * stride``."""
    periods = [n * s for n, s in zip(in_spatial, strides)]
    diffs = [-(m - p) % (2 * p) for m, p in zip(y.shape[1:-1], periods)]
    pads = [((d + 1) // 2, d // 2) for d in diffs]
    if transpose_kernel:  # the odd element of the padding goes after, not before (as Flax)
        pads = [p[::-1] for p in pads]
    y = jnp.pad(y, [(0, 0)] + pads + [(0, 0)])
    for i in range(1, y.ndim - 1):
        y = y.reshape(y.shape[:i] + (-1, periods[i - 1]) + y.shape[i + 1 :])
        y = y.sum(axis=i)
    return y
