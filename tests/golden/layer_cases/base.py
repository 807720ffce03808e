"""The case record and registry shared by the layer golden cases."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

inits = jax.nn.initializers


@dataclasses.dataclass
class Case:
    """One run: ``module.init(rngs, *args, **init_kwargs)`` then ``module.apply``; or ``fn``."""

    module: Any = None
    args: tuple = ()
    rngs: Any = None
    init_kwargs: dict = dataclasses.field(default_factory=dict)
    apply_kwargs: dict = dataclasses.field(default_factory=dict)
    apply_args: tuple | None = None
    fn: Callable | None = None

    def call_args(self) -> tuple:
        """The positional arguments of ``apply`` (those of ``init`` unless given)."""
        return self.args if self.apply_args is None else self.apply_args


CASES: dict[str, Callable[[Any], Case]] = {}


def case(fn: Callable[[Any], Case]) -> Callable[[Any], Case]:
    """Register a case under its function name."""
    CASES[fn.__name__] = fn
    return fn


def key(seed: int = 0) -> jax.Array:
    """A typed PRNG key."""
    return jax.random.key(seed)


def data(*shape: int, seed: int = 0, dtype: Any = jnp.float32) -> jax.Array:
    """Normal inputs from NumPy, so they do not depend on the threefry setting."""
    return jnp.asarray(np.random.RandomState(seed).standard_normal(shape), dtype)


def ints(*shape: int, high: int, seed: int = 0) -> jax.Array:
    """Integer inputs in ``[0, high)``."""
    return jnp.asarray(np.random.RandomState(seed).randint(0, high, shape), jnp.int32)
