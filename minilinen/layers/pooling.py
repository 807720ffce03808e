"""Pooling over windows of the spatial axes: pool, max_pool, avg_pool, min_pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from minilinen.errors import LayerConfigError
from minilinen.typing import Array

__all__ = ["pool", "avg_pool", "max_pool", "min_pool"]

Padding = str | Sequence[tuple[int, int]]


def pool(
    inputs: Array,
    init: Any,
    reduce_fn: Callable[[Array, Array], Array],
    window_shape: Sequence[int],
    strides: Sequence[int] | None,
    padding: Padding,
) -> Array:
    """Reduces ``inputs`` (``(*batch, *spatial, features)``) over sliding windows.

    Args:
      init: the reduction's identity (e.g. ``-inf`` for max).
      reduce_fn: a binary ``lax`` reduction such as ``lax.max``.
      window_shape: window size per spatial axis.
      strides: step per spatial axis (default all 1).
      padding: 'SAME', 'VALID' or one (low, high) pair per spatial axis.
    """
    window_shape = tuple(window_shape)
    rank = len(window_shape)
    n_batch = inputs.ndim - (rank + 1)
    strides = tuple(strides) if strides else (1,) * rank
    if len(strides) != rank:
        raise LayerConfigError(
            f"pool strides {strides} must have one entry per window axis {window_shape}."
        )
    dims = (1,) * n_batch + window_shape + (1,)
    steps = (1,) * n_batch + strides + (1,)
    if not isinstance(padding, str):
        padding = tuple(tuple(p) for p in padding)
        if len(padding) != rank or any(len(p) != 2 for p in padding):
            raise LayerConfigError(
                f"pool padding {padding} must be one (low, high) pair per window axis "
                f"{window_shape}."
            )
        padding = ((0, 0),) * n_batch + padding + ((0, 0),)
    return lax.reduce_window(inputs, init, reduce_fn, dims, steps, padding)


def avg_pool(
    inputs: Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: Padding = "VALID",
    count_include_pad: bool = True,
) -> Array:
    """Mean over each window; padding counts as zeros unless ``count_include_pad=False``."""
    y = pool(inputs, 0.0, lax.add, window_shape, strides, padding)
    if count_include_pad:
        return y / np.prod(window_shape)
    div_shape = inputs.shape[:-1] + (1,)
    if len(div_shape) - 2 == len(window_shape):
        div_shape = (1,) + div_shape[1:]
    return y / pool(jnp.ones(div_shape), 0.0, lax.add, window_shape, strides, padding)


def max_pool(
    inputs: Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> Array:
    """Maximum over each window."""
    return pool(inputs, -jnp.inf, lax.max, window_shape, strides, padding)


def min_pool(
    inputs: Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: Padding = "VALID",
) -> Array:
    """Minimum over each window."""
    return pool(inputs, jnp.inf, lax.min, window_shape, strides, padding)
