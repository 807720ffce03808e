"""Activations: the ``jax.nn`` functions, re-exported, plus the learnable PReLU."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax.nn import (
    celu,
    elu,
    gelu,
    glu,
    hard_sigmoid,
    hard_silu,
    hard_swish,
    hard_tanh,
    leaky_relu,
    log_sigmoid,
    log_softmax,
    logsumexp,
    one_hot,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    soft_sign,
    softmax,
    softplus,
    standardize,
    swish,
)
from jax.numpy import tanh

from minilinen.module import Module, compact
from minilinen.typing import Array

__all__ = [
    "PReLU",
    "celu",
    "elu",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "normalize",
    "one_hot",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "standardize",
    "swish",
    "tanh",
]

normalize = standardize


def _constant(rng: Array, value: float, dtype: Any) -> Array:
    # Module-level with hashable arguments, so the scope can cache its shape.
    del rng
    return jnp.asarray(value, dtype)


class PReLU(Module):
    """Leaky ReLU whose negative slope is a learned scalar parameter."""

    param_dtype: Any = jnp.float32
    negative_slope_init: float = 0.01

    @compact
    def __call__(self, inputs: Array) -> Array:
        """``x`` where ``x >= 0``, else ``negative_slope * x``."""
        slope = self.param("negative_slope", _constant, self.negative_slope_init, self.param_dtype)
        return jnp.where(inputs >= 0, inputs, jnp.asarray(slope, inputs.dtype) * inputs)
