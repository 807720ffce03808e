"""Parameter initializers: ``jax.nn.initializers`` plus Flax's ``zeros_init``/``ones_init``."""

from __future__ import annotations

from jax.nn import initializers as _jax_initializers
from jax.nn.initializers import *  # noqa: F403  (all of them, as Flax re-exports them)
from jax.nn.initializers import Initializer, ones, zeros

# JAX's module has no __all__: its public names are the initializers (and Initializer).
__all__ = sorted(
    [name for name in vars(_jax_initializers) if not name.startswith("_")]
    + ["zeros_init", "ones_init"]
)


def zeros_init() -> Initializer:
    """An initializer that returns zeros (``jax.nn.initializers.zeros``)."""
    return zeros


def ones_init() -> Initializer:
    """An initializer that returns ones (``jax.nn.initializers.ones``)."""
    return ones
