"""Activations: the ``jax.nn`` functions, re-exported, plus the learnable PReLU."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from minilinen.module import Module, compact
from minilinen.typing import Array

# Flax re-exports these jax.nn functions unchanged (the very same objects): one list,
# rather than the same names written once to import them and again in __all__.
_FROM_JAX_NN = """celu elu gelu glu hard_sigmoid hard_silu hard_swish hard_tanh leaky_relu
    log_sigmoid log_softmax logsumexp one_hot relu relu6 selu sigmoid silu soft_sign softmax
    softplus standardize swish""".split()
globals().update({name: getattr(jax.nn, name) for name in _FROM_JAX_NN})
tanh = jnp.tanh
normalize = jax.nn.standardize

__all__ = ["PReLU", "normalize", "tanh", *_FROM_JAX_NN]


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
