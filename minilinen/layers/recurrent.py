"""Recurrent cells (LSTM, optimized LSTM, GRU, simple) and RNN/Bidirectional over time."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import random

from minilinen import initializers
from minilinen.core import FrozenDict
from minilinen.errors import LayerConfigError
from minilinen.layers.common import promote_dtype
from minilinen.layers.linear import Dense, default_kernel_init
from minilinen.module import Module, compact, nowrap

__all__ = [
    "RNNCellBase",
    "LSTMCell",
    "OptimizedLSTMCell",
    "GRUCell",
    "SimpleCell",
    "RNN",
    "Bidirectional",
    "flip_sequences",
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


def _two_carries(cell: Any, rng: Array, input_shape: tuple[int, ...]) -> tuple[Array, Array]:
    key_c, key_h = random.split(rng)
    shape = tuple(input_shape[:-1]) + (cell.features,)
    return cell.carry_init(key_c, shape, cell.param_dtype), cell.carry_init(
        key_h, shape, cell.param_dtype
    )


class LSTMCell(RNNCellBase):
    """A long short-term memory cell; the carry is ``(c, h)``."""

    features: int
    gate_fn: Callable[..., Any] = sigmoid
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = initializers.orthogonal()
    bias_init: Initializer = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Initializer = initializers.zeros_init()

    @compact
    def __call__(self, carry: tuple[Array, Array], inputs: Array) -> tuple[Carry, Array]:
        """One step: returns ``((new_c, new_h), new_h)``."""
        c, h = carry
        n = h.shape[-1]
        dense_h = functools.partial(
            Dense,
            features=n,
            use_bias=True,
            kernel_init=self.recurrent_kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        dense_i = functools.partial(
            Dense,
            features=n,
            use_bias=False,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        i = self.gate_fn(dense_i(name="ii")(inputs) + dense_h(name="hi")(h))
        f = self.gate_fn(dense_i(name="if")(inputs) + dense_h(name="hf")(h))
        g = self.activation_fn(dense_i(name="ig")(inputs) + dense_h(name="hg")(h))
        o = self.gate_fn(dense_i(name="io")(inputs) + dense_h(name="ho")(h))
        new_c = f * c + i * g
        new_h = o * self.activation_fn(new_c)
        return (new_c, new_h), new_h

    @nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> tuple[Array, Array]:
        """Zeros (by ``carry_init``) ``(c, h)`` of shape ``batch + (features,)``."""
        return _two_carries(self, rng, input_shape)

    @property
    def num_feature_axes(self) -> int:
        """Inputs have one feature axis."""
        return 1


class _DenseParams(Module):
    """Creates a Dense layer's kernel (and bias) without applying it."""

    features: int
    use_bias: bool = True
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()

    @compact
    def __call__(self, inputs: Array) -> tuple[Array, Array | None]:
        """Returns ``(kernel, bias or None)`` sized for ``inputs``."""
        k = self.param(
            "kernel", self.kernel_init, (inputs.shape[-1], self.features), self.param_dtype
        )
        b = None
        if self.use_bias:
            b = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        return k, b


class OptimizedLSTMCell(RNNCellBase):
    """An LSTM cell computing its four gates with two fused matmuls (same params as LSTMCell)."""

    features: int
    gate_fn: Callable[..., Any] = sigmoid
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = initializers.orthogonal()
    bias_init: Initializer = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Initializer = initializers.zeros_init()

    @compact
    def __call__(self, carry: tuple[Array, Array], inputs: Array) -> tuple[Carry, Array]:
        """One step: returns ``((new_c, new_h), new_h)``."""
        c, h = carry
        n = h.shape[-1]
        params_i, params_h = [], []
        for gate in "ifgo":
            params_i.append(
                _DenseParams(
                    features=n,
                    use_bias=False,
                    param_dtype=self.param_dtype,
                    kernel_init=self.kernel_init,
                    bias_init=self.bias_init,
                    name=f"i{gate}",
                )(inputs)
            )
            params_h.append(
                _DenseParams(
                    features=n,
                    use_bias=True,
                    param_dtype=self.param_dtype,
                    kernel_init=self.recurrent_kernel_init,
                    bias_init=self.bias_init,
                    name=f"h{gate}",
                )(h)
            )
        zh = self._fused(h, params_h)
        zi = self._fused(inputs, params_i)
        i = self.gate_fn(zh[0] + zi[0])
        f = self.gate_fn(zh[1] + zi[1])
        g = self.activation_fn(zh[2] + zi[2])
        o = self.gate_fn(zh[3] + zi[3])
        new_c = f * c + i * g
        new_h = o * self.activation_fn(new_c)
        return (new_c, new_h), new_h

    @nowrap
    def _fused(self, x: Array, params: list[tuple[Array, Array | None]]) -> list[Array]:
        kernel = jnp.concatenate([k for k, _ in params], axis=-1)
        bias = None
        if params[0][1] is not None:
            bias = jnp.concatenate([b for _, b in params], axis=-1)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        y = jnp.dot(x, kernel)
        if bias is not None:
            y = y + bias
        return jnp.split(y, len(params), axis=-1)

    @nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> tuple[Array, Array]:
        """Zeros (by ``carry_init``) ``(c, h)`` of shape ``batch + (features,)``."""
        return _two_carries(self, rng, input_shape)

    @property
    def num_feature_axes(self) -> int:
        """Inputs have one feature axis."""
        return 1


class SimpleCell(RNNCellBase):
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
        x = Dense(
            features=n,
            use_bias=True,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            name="i",
        )(inputs)
        x = x + Dense(
            features=n,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.recurrent_kernel_init,
            name="h",
        )(carry)
        if self.residual:
            x = x + carry
        new = self.activation_fn(x)
        return new, new

    @nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Array:
        """Zeros (by ``carry_init``) of shape ``batch + (features,)``."""
        return self.carry_init(rng, tuple(input_shape[:-1]) + (self.features,), self.param_dtype)

    @property
    def num_feature_axes(self) -> int:
        """Inputs have one feature axis."""
        return 1


class GRUCell(RNNCellBase):
    """A gated recurrent unit; the carry is ``h``."""

    features: int
    gate_fn: Callable[..., Any] = sigmoid
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Initializer = default_kernel_init
    recurrent_kernel_init: Initializer = initializers.orthogonal()
    bias_init: Initializer = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Initializer = initializers.zeros_init()

    @compact
    def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
        """One step: returns ``(new_h, new_h)``."""
        h = carry
        n = h.shape[-1]
        dense_h = functools.partial(
            Dense,
            features=n,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.recurrent_kernel_init,
            bias_init=self.bias_init,
        )
        dense_i = functools.partial(
            Dense,
            features=n,
            use_bias=True,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
        )
        r = self.gate_fn(dense_i(name="ir")(inputs) + dense_h(name="hr")(h))
        z = self.gate_fn(dense_i(name="iz")(inputs) + dense_h(name="hz")(h))
        n_ = self.activation_fn(
            dense_i(name="in")(inputs) + r * dense_h(name="hn", use_bias=True)(h)
        )
        new_h = (1.0 - z) * n_ + z * h
        return new_h, new_h

    @nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Array:
        """Zeros (by ``carry_init``) of shape ``batch + (features,)``."""
        return self.carry_init(rng, tuple(input_shape[:-1]) + (self.features,), self.param_dtype)

    @property
    def num_feature_axes(self) -> int:
        """Inputs have one feature axis."""
        return 1


def flip_sequences(
    inputs: Array, seq_lengths: Array | None, num_batch_dims: int, time_major: bool
) -> Array:
    """Reverses each sequence in time; with ``seq_lengths``, only its first ``length`` steps.

    Padding stays at the end: ``[1, 2, 3, 0, 0]`` with length 3 becomes ``[3, 2, 1, 0, 0]``.
    """
    time_axis = 0 if time_major else num_batch_dims
    if seq_lengths is None:
        return jnp.flip(inputs, axis=time_axis)
    steps = inputs.shape[time_axis]
    lengths = jnp.expand_dims(seq_lengths, axis=time_axis)
    idx = jnp.arange(steps - 1, -1, -1)
    if time_major:
        idx = jnp.reshape(idx, [steps] + [1] * num_batch_dims)
    else:
        idx = jnp.reshape(idx, [1] * num_batch_dims + [steps])
    idx = (idx + lengths) % steps
    idx = idx.reshape(idx.shape + (1,) * (inputs.ndim - idx.ndim))
    return jnp.take_along_axis(inputs, idx, axis=time_axis)


def _last_carry(carries: Any, seq_lengths: Array) -> Any:
    """Picks, per sequence, the carry after its last real step (carries are time-major)."""
    last = seq_lengths - 1
    return jax.tree_util.tree_map(lambda x: x[last, jnp.arange(x.shape[1])], carries)


class RNN(Module):
    """Runs ``cell`` over the time axis of its input with ``lax.scan``.

    The cell's parameters (under the name ``cell``) are shared by every step.
    """

    cell: RNNCellBase
    time_major: bool = False
    return_carry: bool = False
    reverse: bool = False
    keep_order: bool = False
    unroll: int = 1
    variable_axes: Mapping[Any, int] = FrozenDict()
    variable_broadcast: Any = "params"
    variable_carry: Any = False
    split_rngs: Mapping[Any, bool] = FrozenDict({"params": False})

    def __post_init__(self) -> None:
        # The scan here shares the cell's params across steps and nothing else;
        # refuse the lifting options it would otherwise silently ignore.
        if (
            self.variable_axes
            or self.variable_carry
            or self.variable_broadcast != "params"
            or any(self.split_rngs.values())
        ):
            raise LayerConfigError(
                "RNN supports only its default lifting options (params broadcast to every "
                "step, no scanned or carried collections, no per-step RNG splitting); for "
                "others, wrap the cell with nn.scan directly."
            )
        super().__post_init__()

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Carry | None = None,
        init_key: Array | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ) -> Any:
        """Returns the outputs over time (and the final carry if ``return_carry``).

        Args:
          inputs: ``(*batch, time, *features)``, or ``(time, *batch, *features)`` if
            ``time_major``.
          initial_carry: the starting carry; defaults to ``cell.initialize_carry``.
          seq_lengths: ``(*batch,)`` real lengths; the returned carry is the one after
            each sequence's last real step, and ``reverse`` flips only real steps.
        """
        return_carry = self.return_carry if return_carry is None else return_carry
        time_major = self.time_major if time_major is None else time_major
        reverse = self.reverse if reverse is None else reverse
        keep_order = self.keep_order if keep_order is None else keep_order
        n_feat = self.cell.num_feature_axes
        time_axis = 0 if time_major else inputs.ndim - (n_feat + 1)
        batch_dims = inputs.shape[1:-n_feat] if time_major else inputs.shape[:time_axis]
        if reverse:
            inputs = flip_sequences(inputs, seq_lengths, len(batch_dims), time_major)
        if initial_carry is None:
            key = random.key(0) if init_key is None else init_key
            step_shape = inputs.shape[:time_axis] + inputs.shape[time_axis + 1 :]
            carry = self.cell.initialize_carry(key, step_shape)
        else:
            carry = initial_carry

        xs = inputs if time_axis == 0 else jnp.moveaxis(inputs, time_axis, 0)
        cell = self.cell
        if self.is_initializing():
            # Create the cell's parameters outside the scan so no tracer of the
            # scan body ends up stored in the variables.
            cell(carry, xs[0])
        slice_carry = seq_lengths is not None and return_carry

        def step(c: Carry, x: Array) -> tuple[Carry, Any]:
            c, y = cell(c, x)
            return c, ((c, y) if slice_carry else y)

        carry, ys = jax.lax.scan(step, carry, xs, unroll=self.unroll)
        if slice_carry:
            carries, ys = ys
            carry = _last_carry(carries, seq_lengths)
        if time_axis != 0:
            ys = jax.tree_util.tree_map(lambda y: jnp.moveaxis(y, 0, time_axis), ys)
        if reverse and keep_order:
            ys = jax.tree_util.tree_map(
                lambda y: flip_sequences(y, seq_lengths, len(batch_dims), time_major), ys
            )
        return (carry, ys) if return_carry else ys


def _concatenate(a: Array, b: Array) -> Array:
    return jnp.concatenate([a, b], axis=-1)


class Bidirectional(Module):
    """Runs one RNN forward and one backward in time and merges their outputs."""

    forward_rnn: Any
    backward_rnn: Any
    merge_fn: Callable[[Array, Array], Array] = _concatenate
    time_major: bool = False
    return_carry: bool = False

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Carry | None = None,
        init_key: Array | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ) -> Any:
        """Returns ``merge_fn(forward, backward)`` outputs (and both carries if asked)."""
        time_major = self.time_major if time_major is None else time_major
        return_carry = self.return_carry if return_carry is None else return_carry
        if init_key is not None:
            key_f, key_b = random.split(init_key)
        else:
            key_f = key_b = None
        carry_f, carry_b = (None, None) if initial_carry is None else initial_carry
        carry_f, out_f = self.forward_rnn(
            inputs,
            initial_carry=carry_f,
            init_key=key_f,
            seq_lengths=seq_lengths,
            return_carry=True,
            time_major=time_major,
            reverse=False,
        )
        carry_b, out_b = self.backward_rnn(
            inputs,
            initial_carry=carry_b,
            init_key=key_b,
            seq_lengths=seq_lengths,
            return_carry=True,
            time_major=time_major,
            reverse=True,
            keep_order=True,
        )
        outputs = jax.tree_util.tree_map(self.merge_fn, out_f, out_b)
        return ((carry_f, carry_b), outputs) if return_carry else outputs
