"""``RNN`` and ``Bidirectional``: a recurrent cell run over the time axis of a sequence.

``RNN`` is a lifted ``nn.scan`` of its cell, with the RNN's lifting options (which
collections are shared by every step, scanned per step or carried, which RNG
streams are split per step), so it lives with the transforms, not the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import random

from minilinen.core import FrozenDict
from minilinen.layers.recurrent import RNNCellBase
from minilinen.module import Module
from minilinen.transforms.scan import scan

__all__ = ["RNN", "Bidirectional", "flip_sequences"]

Array = Any
Carry = Any


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
    # Time on its axis, length-1 batch axes around it: broadcasts against the lengths.
    idx_shape = [1] * time_axis + [steps] + [1] * (num_batch_dims - time_axis)
    idx = (jnp.arange(steps - 1, -1, -1).reshape(idx_shape) + lengths) % steps
    idx = idx.reshape(idx.shape + (1,) * (inputs.ndim - idx.ndim))
    return jnp.take_along_axis(inputs, idx, axis=time_axis)


class RNN(Module):
    """Runs ``cell`` over the time axis of its input: ``nn.scan`` of the cell, one step per
    time step.

    The lifting options are ``nn.scan``'s: by default the cell's params are shared by
    every step (``variable_broadcast='params'``) and only the 'params' RNG stream reaches
    the steps. A stream a step draws from (say 'dropout') must be named in ``split_rngs``:
    ``True`` for a new key each step, ``False`` for the same key every step.
    ``variable_axes`` stacks a collection per step (e.g. sown 'intermediates', on the
    time axis), ``variable_carry`` threads one from step to step, and ``unroll`` is
    ``lax.scan``'s.
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
        n_batch = inputs.ndim - (n_feat + 1)
        if reverse:
            inputs = flip_sequences(inputs, seq_lengths, n_batch, time_major)
        carry = initial_carry
        if carry is None:
            key = random.key(0) if init_key is None else init_key
            step_shape = inputs.shape[:time_axis] + inputs.shape[time_axis + 1 :]
            carry = self.cell.initialize_carry(key, step_shape)
        # With lengths, every step's carry is an output too (time-major), to pick the
        # carry after each sequence's last real step.
        slice_carry = seq_lengths is not None and return_carry

        def step(cell: RNNCellBase, c: Carry, x: Array) -> tuple[Carry, Any]:
            c, y = cell(c, x)
            return c, ((c, y) if slice_carry else y)

        over_time = scan(
            step,
            variable_axes=self.variable_axes,
            variable_broadcast=self.variable_broadcast,
            variable_carry=self.variable_carry,
            split_rngs=self.split_rngs,
            in_axes=time_axis,
            out_axes=(0, time_axis) if slice_carry else time_axis,
            unroll=self.unroll,
        )
        carry, ys = over_time(self.cell, carry, inputs)
        if slice_carry:
            carries, ys = ys
            last = seq_lengths - 1
            carry = jax.tree_util.tree_map(lambda c: c[last, jnp.arange(c.shape[1])], carries)
        if reverse and keep_order:
            ys = jax.tree_util.tree_map(
                lambda y: flip_sequences(y, seq_lengths, n_batch, time_major), ys
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
        key_f, key_b = (None, None) if init_key is None else random.split(init_key)
        carry_f, carry_b = (None, None) if initial_carry is None else initial_carry
        common = dict(seq_lengths=seq_lengths, return_carry=True, time_major=time_major)
        carry_f, out_f = self.forward_rnn(
            inputs, initial_carry=carry_f, init_key=key_f, reverse=False, **common
        )
        carry_b, out_b = self.backward_rnn(
            inputs, initial_carry=carry_b, init_key=key_b, reverse=True, keep_order=True, **common
        )
        outputs = jax.tree_util.tree_map(self.merge_fn, out_f, out_b)
        return ((carry_f, carry_b), outputs) if return_carry else outputs
