"""Dropout."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jax import lax, random

from minilinen.layers.common import merge_param
from minilinen.module import Module, compact
from minilinen.typing import Array

__all__ = ["Dropout"]


class Dropout(Module):
    """Zeroes each input element with probability ``rate`` and rescales the rest."""

    rate: float
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    @compact
    def __call__(
        self, inputs: Array, deterministic: bool | None = None, rng: Array | None = None
    ) -> Array:
        """Applies dropout unless ``deterministic`` (given here or to the constructor)."""
        deterministic = merge_param("deterministic", self.deterministic, deterministic)
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            # keep_prob would be 0: avoid dividing by it.
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        shape = list(inputs.shape)
        for d in self.broadcast_dims:
            shape[d] = 1
        keep = random.bernoulli(rng, p=keep_prob, shape=shape)
        keep = jnp.broadcast_to(keep, inputs.shape)
        return lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))
