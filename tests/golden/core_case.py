"""What a core golden case is, its registry, and the custom layers cases share.

A case is a function of ``nn``, the module namespace: ``flax.linen`` when
``make_golden.py`` records the goldens, ``minilinen`` when
``tests/test_golden_core.py`` checks them. It returns a :class:`Case`: the module,
the arguments of ``init`` and ``apply``, the rngs of ``init`` (a key or a dict of
keys) and extra keyword arguments of each call. The custom layers of :func:`lib`
use only ``self.param``/``self.variable``/``make_rng`` so most cases exercise the
Module system alone.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp

inits = jax.nn.initializers


@dataclasses.dataclass
class Case:
    """One model run: ``init(rngs, *args, **init_kwargs)`` then ``apply``."""

    module: Any
    args: tuple
    rngs: Any
    init_kwargs: dict = dataclasses.field(default_factory=dict)
    apply_kwargs: dict = dataclasses.field(default_factory=dict)
    apply_args: tuple | None = None

    def call_args(self) -> tuple:
        """The positional arguments of ``apply`` (those of ``init`` unless given)."""
        return self.args if self.apply_args is None else self.apply_args


CASES: dict[str, Callable[[Any], Case]] = {}


def case(fn: Callable[[Any], Case]) -> Callable[[Any], Case]:
    """Register a case under its function name."""
    CASES[fn.__name__] = fn
    return fn


def key(seed: int) -> jax.Array:
    """A raw uint32 PRNG key, as ``jax.random.PRNGKey`` makes in the seeds."""
    return jax.random.PRNGKey(seed)


def data(*shape: int, phase: float = 0.0) -> jax.Array:
    """Deterministic float32 inputs that do not depend on the threefry setting."""
    n = 1
    for s in shape:
        n *= s
    return jnp.sin(jnp.arange(n, dtype=jnp.float32) * 0.37 + phase).reshape(shape)


@functools.cache
def lib(nn: Any) -> SimpleNamespace:
    """Custom layers built on the core API only (one set of classes per ``nn``)."""

    class Linear(nn.Module):
        features: int
        use_bias: bool = True
        kernel_init: Callable = inits.lecun_normal()
        bias_init: Callable = inits.zeros

        @nn.compact
        def __call__(self, x):
            k = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
            y = x @ k
            if self.use_bias:
                y = y + self.param("bias", self.bias_init, (self.features,))
            return y

    class Scale(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x * self.param("scale", inits.ones, (x.shape[-1],))

    class Noisy(nn.Module):
        """Dropout-like: draws from ``stream`` via ``make_rng``."""

        rate: float = 0.5
        stream: str = "dropout"

        @nn.compact
        def __call__(self, x):
            keep = jax.random.bernoulli(self.make_rng(self.stream), 1.0 - self.rate, x.shape)
            return jnp.where(keep, x / (1.0 - self.rate), 0.0)

    class RunningMean(nn.Module):
        momentum: float = 0.9

        @nn.compact
        def __call__(self, x):
            ra = self.variable("batch_stats", "mean", jnp.zeros, x.shape[-1:])
            if self.is_mutable_collection("batch_stats") and not self.is_initializing():
                ra.value = self.momentum * ra.value + (1.0 - self.momentum) * x.mean(0)
            return x - ra.value

    class Wrapper(nn.Module):
        """Calls a submodule handed in as a field, then a layer of its own."""

        layer: nn.Module

        @nn.compact
        def __call__(self, x):
            return Linear(x.shape[-1])(jnp.tanh(self.layer(x)))

    return SimpleNamespace(
        Linear=Linear, Scale=Scale, Noisy=Noisy, RunningMean=RunningMean, Wrapper=Wrapper
    )
