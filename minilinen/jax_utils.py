"""Device helpers of pmap-style training loops (Flax's ``flax.jax_utils``)."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minilinen import errors

__all__ = ["replicate", "unreplicate", "prefetch_to_device", "pad_shard_unpad"]


def _stacked_on(devices: Sequence[Any] | None, axis_name: str) -> Callable[[Any], jax.Array]:
    devices = list(devices or jax.local_devices())
    sharding = jax.NamedSharding(
        jax.sharding.Mesh(np.array(devices), (axis_name,)), jax.P(axis_name)
    )

    def put(xs: Sequence[Any]) -> jax.Array:
        stack = jnp.stack if isinstance(xs[0], jax.Array) else np.stack
        return jax.device_put(stack(list(xs)), sharding)

    return put


def replicate(
    tree: Any, devices: Sequence[Any] | None = None, axis_name: str = "_device_put_sharded"
) -> Any:
    """A copy of every leaf on each device, stacked along a new leading axis."""
    put = _stacked_on(devices, axis_name)
    n = len(devices or jax.local_devices())
    return jax.tree_util.tree_map(lambda x: put([x] * n), tree)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of every replicated leaf."""

    def first(x: Any) -> Any:
        if getattr(x, "ndim", None) == 0:
            return x
        sharding = getattr(x, "sharding", None)
        if (
            sharding is None
            or isinstance(sharding, jax.sharding.SingleDeviceSharding)
            or jax.local_device_count() == 1
        ):
            return x[0]
        shard = x.addressable_shards[0].data
        return shard if sharding.is_fully_replicated else shard.squeeze(0)

    return jax.tree_util.tree_map(first, tree)


def prefetch_to_device(
    iterator: Any,
    size: int,
    devices: Sequence[Any] | None = None,
    axis_name: str = "_device_put_sharded",
) -> Iterator[Any]:
    """Yields the iterator's (already sharded) batches, keeping ``size`` on the devices ahead."""
    queue: collections.deque = collections.deque()
    put = _stacked_on(devices, axis_name)

    def enqueue(n: int) -> None:
        for batch in itertools.islice(iterator, n):
            queue.append(jax.tree_util.tree_map(put, batch))

    enqueue(size)
    while queue:
        yield queue.popleft()
        enqueue(1)


def pad_shard_unpad(
    wrapped: Callable,
    static_argnums: Sequence[int] = (0,),
    static_argnames: Sequence[str] = (),
    static_return: bool = False,
) -> Callable:
    """Wraps a pmapped ``wrapped`` so it takes any batch size: pads the batch to a
    multiple of the device count, shards it, and strips the padding from the result."""

    def run(*args: Any, min_device_batch: int | None = None, **kw: Any) -> Any:
        d = jax.local_device_count()
        dynamic = [a for i, a in enumerate(args) if i not in static_argnums]
        dynamic += [v for k, v in kw.items() if k not in static_argnames]
        sizes = {x.shape[0] for x in jax.tree_util.tree_leaves(dynamic)}
        if len(sizes) != 1:
            raise errors.LayerInputError(
                f"pad_shard_unpad: inconsistent batch sizes {sorted(sizes)}."
            )
        (b,) = sizes
        per_device = max(-(-b // d), min_device_batch or 0)

        def pad(x: Any) -> Any:
            x = np.concatenate([x, np.zeros((d * per_device - b, *x.shape[1:]), x.dtype)])
            return x.reshape(d, per_device, *x.shape[1:])

        def pad_tree(tree: Any, static: bool) -> Any:
            return tree if static else jax.tree_util.tree_map(pad, tree)

        args = [pad_tree(a, i in static_argnums) for i, a in enumerate(args)]
        kw = {k: pad_tree(v, k in static_argnames) for k, v in kw.items()}
        out = wrapped(*args, **kw)
        if static_return:
            return out
        unpad = lambda x: jax.device_get(x).reshape(-1, *x.shape[2:])[:b]  # noqa: E731
        return jax.tree_util.tree_map(unpad, out)

    return run
