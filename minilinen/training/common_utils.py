"""Helpers of pmap-style data-parallel training loops (Flax's ``training.common_utils``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["shard", "shard_prng_key", "stack_forest", "get_metrics", "onehot"]


def shard(xs: Any) -> Any:
    """Splits every leaf's leading dimension into ``(local devices, per device)``."""
    n = jax.local_device_count()
    return jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), xs)


def shard_prng_key(key: jax.Array) -> jax.Array:
    """One key per local device, split from ``key``."""
    return jax.random.split(key, jax.local_device_count())


def stack_forest(forest: Any) -> Any:
    """Stacks a sequence of same-structured trees leaf by leaf."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *forest)


def get_metrics(device_metrics: Any) -> Any:
    """Per-step metrics of device 0, fetched to the host and stacked over steps."""
    first = jax.tree.map(lambda x: x.addressable_shards[0].data.squeeze(0), device_metrics)
    return stack_forest(jax.device_get(first))


def onehot(labels: Any, num_classes: int, on_value: float = 1.0, off_value: float = 0.0) -> Any:
    """float32 one-hot vectors of ``labels`` along a new last axis."""
    hot = labels[..., None] == jnp.arange(num_classes)
    return jnp.where(hot, on_value, off_value).astype(jnp.float32)
