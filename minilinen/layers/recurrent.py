"""Recurrent cells: LSTM, optimized LSTM, GRU, MGU, simple, ConvLSTM.

RNN and Bidirectional, which run a cell over a sequence, are in transforms/rnn.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import random

from minilinen import initializers
from minilinen.errors import LayerConfigError
from minilinen.layers.common import add_bias, promote_dtype
from minilinen.layers.conv import Conv
from minilinen.layers.linear import Dense, default_kernel_init, kernel_and_bias
from minilinen.module import Module, compact, nowrap

__all__ = [
    "RNNCellBase",
    "LSTMCell",
    "OptimizedLSTMCell",
    "GRUCell",
    "MGUCell",
    "ConvLSTMCell",
    "SimpleCell",
]

Array = Any
Dtype = Any
Carry = Any
Initializer = Callable[..., Any]

sigmoid = jax.nn.sigmoid
tanh = jnp.tanh


class RNNCellBase(Module):
    """Base of recurrent cells: ``cell(carry, x) -> (new_carry, y)``."""

    @nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Carry:
        """The initial carry for inputs of ``input_shape`` (batch axes + features)."""
        raise LayerConfigError(
            f"{type(self).__name__} subclasses RNNCellBase but does not define "
            "initialize_carry(rng, input_shape); every cell must."
        )

    @property
    def num_feature_axes(self) -> int:
        """How many trailing axes of an input are features (not batch or time)."""
        raise LayerConfigError(
            f"{type(self).__name__} subclasses RNNCellBase but does not define the "
            "num_feature_axes property; every cell must."
        )


class _DenseCell(RNNCellBase):
    """The built-in cells: carries shaped ``batch + (features,)``, gates made by Dense layers."""

    _two_carries = False  # LSTMs carry (c, h)

    @nowrap
    def _dense(self, name: str, x: Array, n: int, bias_init: Initializer | None = None) -> Array:
        """Dense ``name`` (``n`` features) of ``x``, with a bias only if ``bias_init`` is given.

        Kernels reading the carry (names starting 'h') use ``recurrent_kernel_init``.
        """
        kernel_init = self.recurrent_kernel_init if name[0] == "h" else self.kernel_init
        dense = Dense(
            n,
            bias_init is not None,
            self.dtype,
            self.param_dtype,
            name=name,
            kernel_init=kernel_init,
            bias_init=bias_init or initializers.zeros_init(),
        )
        return dense(x)

    @nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Carry:
        """``carry_init`` values (``(c, h)`` for LSTMs) of shape ``batch + (features,)``."""
        shape = tuple(input_shape[:-1]) + (self.features,)
        if not self._two_carries:
            return self.carry_init(rng, shape, self.param_dtype)
        return tuple(self.carry_init(k, shape, self.param_dtype) for k in random.split(rng))

    @property
    def num_feature_axes(self) -> int:
        """Inputs have one feature axis."""
        return 1


class _GatedCell(_DenseCell):
    """The fields LSTMCell, OptimizedLSTMCell and GRUCell share (in Flax's order)."""

    features: int
    gate_fn: Callable[..., Any] = sigmoid
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = initializers.orthogonal()
    bias_init: Initializer = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Initializer = initializers.zeros_init()


class _LSTM(_GatedCell):
    """LSTMCell and OptimizedLSTMCell: the same state update, gates computed differently."""

    _two_carries = True

    @compact
    def __call__(self, carry: tuple[Array, Array], inputs: Array) -> tuple[Carry, Array]:
        """One step: returns ``((new_c, new_h), new_h)``."""
        c, h = carry
        z = self._gates(inputs, h)  # the pre-activations of gates i, f, g, o
        i, f, o = self.gate_fn(z[0]), self.gate_fn(z[1]), self.gate_fn(z[3])
        new_c = f * c + i * self.activation_fn(z[2])
        new_h = o * self.activation_fn(new_c)
        return (new_c, new_h), new_h


class LSTMCell(_LSTM):
    """A long short-term memory cell; the carry is ``(c, h)``."""

    @nowrap
    def _gates(self, inputs: Array, h: Array) -> list[Array]:
        d, n = self._dense, h.shape[-1]
        return [d(f"i{g}", inputs, n) + d(f"h{g}", h, n, self.bias_init) for g in "ifgo"]


class _DenseParams(Module):
    """Creates a Dense layer's kernel (and bias) without applying it."""

    features: int
    use_bias: bool = True
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()

    @compact
    def __call__(self, inputs: Array) -> tuple[Array, Array | None]:
        """Returns ``(kernel, bias or None)`` sized for ``inputs``."""
        return kernel_and_bias(self, (inputs.shape[-1], self.features), (self.features,))


class OptimizedLSTMCell(_LSTM):
    """An LSTM cell computing its four gates with two fused matmuls (same params as LSTMCell)."""

    @nowrap
    def _gates(self, inputs: Array, h: Array) -> list[Array]:
        dense = functools.partial(
            _DenseParams, h.shape[-1], param_dtype=self.param_dtype, bias_init=self.bias_init
        )
        params_i, params_h = [], []
        for g in "ifgo":
            params_i.append(dense(False, kernel_init=self.kernel_init, name="i" + g)(inputs))
            params_h.append(dense(True, kernel_init=self.recurrent_kernel_init, name="h" + g)(h))
        zh, zi = self._fused(h, params_h), self._fused(inputs, params_i)
        return [a + b for a, b in zip(zh, zi)]

    @nowrap
    def _fused(self, x: Array, params: list[tuple[Array, Array | None]]) -> list[Array]:
        kernel = jnp.concatenate([k for k, _ in params], axis=-1)
        bias = None
        if params[0][1] is not None:
            bias = jnp.concatenate([b for _, b in params], axis=-1)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        # add_bias reshapes to full rank first, so rank promotion set to 'raise' passes.
        y = add_bias(jnp.dot(x, kernel), bias)
        return jnp.split(y, len(params), axis=-1)


class SimpleCell(_DenseCell):
    """An Elman cell: ``h' = activation(W_i x + b + W_h h)`` (plus ``h`` if residual)."""

    features: int
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = initializers.orthogonal()
    bias_init: Initializer = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Initializer = initializers.zeros_init()
    residual: bool = False

    @compact
    def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
        """One step: returns ``(new_h, new_h)``."""
        n = carry.shape[-1]
        x = self._dense("i", inputs, n, self.bias_init) + self._dense("h", carry, n)
        if self.residual:
            x = x + carry
        new = self.activation_fn(x)
        return new, new


class GRUCell(_GatedCell):
    """A gated recurrent unit; the carry is ``h``."""

    @compact
    def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
        """One step: returns ``(new_h, new_h)``."""
        h, d, b = carry, self._dense, self.bias_init
        n = h.shape[-1]
        r = self.gate_fn(d("ir", inputs, n, b) + d("hr", h, n))
        z = self.gate_fn(d("iz", inputs, n, b) + d("hz", h, n))
        n_ = self.activation_fn(d("in", inputs, n, b) + r * d("hn", h, n, b))
        new_h = (1.0 - z) * n_ + z * h
        return new_h, new_h


class MGUCell(_DenseCell):
    """A minimal gated unit: one forget gate ``f`` and ``h' = (1 - f) * n + f * h``."""

    features: int
    gate_fn: Callable[..., Any] = sigmoid
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = initializers.orthogonal()
    forget_bias_init: Initializer = initializers.ones_init()
    activation_bias_init: Initializer = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Initializer = initializers.zeros_init()
    reset_gate: bool = True

    @compact
    def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
        """One step: returns ``(new_h, new_h)``."""
        h, d, b = carry, self._dense, self.activation_bias_init
        n = h.shape[-1]
        f = self.gate_fn(d("if", inputs, n, self.forget_bias_init) + d("hf", h, n))
        x = d("hn", h, n, b if self.reset_gate else None)
        if self.reset_gate:
            x = x * f
        n_ = self.activation_fn(d("in", inputs, n, b) + x)
        new_h = (1.0 - f) * n_ + f * h
        return new_h, new_h


class ConvLSTMCell(_DenseCell):
    """An LSTM cell whose input and recurrent maps are convolutions; the carry is ``(c, h)``."""

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] | None = None
    padding: str | Sequence[tuple[int, int]] = "SAME"
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Initializer = initializers.zeros_init()

    _two_carries = True

    @compact
    def __call__(self, carry: tuple[Array, Array], inputs: Array) -> tuple[Carry, Array]:
        """One step on ``(*batch, *spatial, features)`` inputs; the forget gate is biased +1."""
        c, h = carry
        conv = functools.partial(
            Conv, 4 * self.features, self.kernel_size, self.strides, self.padding,
            use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
        )  # fmt: skip
        gates = conv(name="ih")(inputs) + conv(name="hh")(h)
        i, g, f, o = jnp.split(gates, 4, axis=-1)
        new_c = sigmoid(f + 1) * c + sigmoid(i) * tanh(g)
        new_h = sigmoid(o) * tanh(new_c)
        return (new_c, new_h), new_h

    @property
    def num_feature_axes(self) -> int:
        """The spatial axes and the feature axis."""
        return len(self.kernel_size) + 1
