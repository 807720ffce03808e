"""Device helpers of pmap-style training loops, and scans over several axes
(Flax's ``flax.jax_utils``)."""

from __future__ import annotations

import collections
import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import linear_util as lu
from jax.interpreters import partial_eval as pe

from minilinen import errors

__all__ = ["replicate", "unreplicate", "pmean", "partial_eval_by_shape", "prefetch_to_device"]
__all__ += ["scan_in_dim", "pad_shard_unpad"]

_AXIS = "_device_put_sharded"


def _split_over(devices: Sequence[Any], axis_name: str, x: Any) -> jax.Array:
    """``x`` cut along its leading axis, one slice per device (a 1-d mesh of ``devices``)."""
    mesh = jax.sharding.Mesh(np.array(devices), (axis_name,))
    return jax.device_put(x, jax.NamedSharding(mesh, jax.P(axis_name)))


def replicate(tree: Any, devices: Sequence[Any] | None = None, axis_name: str = _AXIS) -> Any:
    """A copy of every leaf on each device, stacked along a new leading axis."""
    devices = devices or jax.local_devices()

    def stacked(x: Any) -> jax.Array:
        # NumPy leaves stay NumPy until the transfer, so Python scalars get no weak type.
        xp = jnp if isinstance(x, jax.Array) else np
        return _split_over(devices, axis_name, xp.broadcast_to(x, (len(devices), *np.shape(x))))

    return jax.tree.map(stacked, tree)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of every replicated leaf."""

    def first(x: Any) -> Any:
        if getattr(x, "ndim", None) == 0:
            return x
        single = (type(None), jax.sharding.SingleDeviceSharding)
        if isinstance(getattr(x, "sharding", None), single) or jax.local_device_count() == 1:
            return x[0]
        # Reading the local shard avoids a gather of the whole stacked array.
        shard = x.addressable_shards[0].data
        return shard if x.sharding.is_fully_replicated else shard.squeeze(0)

    return jax.tree.map(first, tree)


def pmean(xs: Any, axis_name: str) -> Any:
    """Deprecated: ``jax.lax.pmean``."""
    warnings.warn("use jax.lax.pmean instead", DeprecationWarning, stacklevel=2)
    return jax.lax.pmean(xs, axis_name)


def _partial_val(x: Any) -> pe.PartialVal:
    if isinstance(x, jax.ShapeDtypeStruct):
        return pe.PartialVal.unknown(jax.core.ShapedArray(x.shape, x.dtype))
    return pe.PartialVal.known(x)


def partial_eval(fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` run only as far as its concrete arguments decide: the outputs that
    depend on a ``jax.ShapeDtypeStruct`` argument come back as ``jax.ShapeDtypeStruct``s."""
    flat, tree = jax.tree.flatten(args)
    debug = jax.api_util.debug_info("partial_eval", fn, args, {})
    flat_fn, out_tree = jax.api_util.flatten_fun_nokwargs(lu.wrap_init(fn, debug_info=debug), tree)
    # Known outputs are computed eagerly while tracing.
    _, outs, _ = pe.trace_to_jaxpr_nounits(flat_fn, [_partial_val(x) for x in flat])
    outs = [v if aval is None else jax.ShapeDtypeStruct(aval.shape, aval.dtype) for aval, v in outs]
    return jax.tree.unflatten(out_tree(), outs)


def partial_eval_by_shape(fn: Callable, input_spec: Iterable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*inputs, *args, **kwargs)`` for inputs given as shapes or ``(shape, dtype)``
    pairs (float32 by default): see :func:`partial_eval`."""

    def spec(s: Any) -> jax.ShapeDtypeStruct:
        s = tuple(s)
        if len(s) == 2 and isinstance(s[0], Iterable):
            return jax.ShapeDtypeStruct(tuple(s[0]), s[1])
        return jax.ShapeDtypeStruct(s, jnp.float32)

    inputs = [spec(s) for s in input_spec]
    return partial_eval(lambda *xs: fn(*xs, *args, **kwargs), *inputs)


def prefetch_to_device(
    iterator: Iterable, size: int, devices: Sequence[Any] | None = None, axis_name: str = _AXIS
) -> Iterator[Any]:
    """Yields the iterator's batches (leading axis = devices) already split over the
    devices, keeping up to ``size`` transferred ahead."""
    devices = devices or jax.local_devices()
    batches = (jax.tree.map(lambda x: _split_over(devices, axis_name, x), b) for b in iterator)
    queue = collections.deque(itertools.islice(batches, size))
    while queue:
        yield queue.popleft()
        queue.extend(itertools.islice(batches, 1))


def _scan_nested(body_fn: Callable, init: Any, xs: Any, unroll: tuple) -> Any:
    """One ``lax.scan`` per entry of ``unroll``, the first outermost."""
    if len(unroll) > 1:
        inner = body_fn
        body_fn = lambda c, x: _scan_nested(inner, c, x, unroll[1:])  # noqa: E731
    return jax.lax.scan(body_fn, init, xs, unroll=unroll[0])


def scan_in_dim(
    body_fn: Callable, init: Any, xs: Any, axis: Any = (0,), unroll: Any = (1,), keepdims=False
) -> tuple[Any, Any]:
    """``lax.scan`` over the axes ``axis`` of every leaf of ``xs``, nested in that order.

    ``unroll`` is left-padded with 1s to one entry per axis, so a single number unrolls
    the innermost loop. With ``keepdims`` the body sees (and returns) its slices with the
    scanned axes kept as size 1.
    """
    axis = tuple(axis) if isinstance(axis, Iterable) else (axis,)
    unroll = tuple(unroll) if isinstance(unroll, Iterable) else (unroll,)
    unroll = ((1,) * (len(axis) - len(unroll)) + unroll)[: len(axis)]
    front = tuple(range(len(axis)))

    def body(c: Any, x: Any) -> Any:
        if not keepdims:
            return body_fn(c, x)
        c, y = body_fn(c, jax.tree.map(lambda v: jnp.expand_dims(v, axis), x))
        return c, jax.tree.map(lambda v: jnp.squeeze(v, axis), y)

    xs = jax.tree.map(lambda x: jnp.moveaxis(x, axis, front), xs)
    c, ys = _scan_nested(body, init, xs, unroll)
    return c, jax.tree.map(lambda y: jnp.moveaxis(y, front, axis), ys)


def pad_shard_unpad(
    wrapped: Callable, static_argnums=(0,), static_argnames=(), static_return=False
) -> Callable:
    """Wraps a pmapped ``wrapped`` so it takes any batch size: pads the batch (in host
    memory) to a multiple of the device count, shards it, and strips the padding from
    the result. The wrapper takes a keyword ``min_device_batch``: pad to at least that
    many examples per device (fewer shapes to compile)."""

    def run(*args: Any, min_device_batch: int | None = None, **kw: Any) -> Any:
        d = jax.local_device_count()
        dynamic = [a for i, a in enumerate(args) if i not in static_argnums]
        dynamic += [v for k, v in kw.items() if k not in static_argnames]
        sizes = {x.shape[0] for x in jax.tree.leaves(dynamic)}
        if len(sizes) != 1:
            raise errors.BatchSizeMismatchError(
                f"pad_shard_unpad: batch sizes {sorted(sizes)} differ; mark unbatched args static."
            )
        (b,) = sizes
        per_device = max(-(-b // d), min_device_batch or 0)

        def pad(x: Any) -> Any:
            x = np.concatenate([x, np.zeros((d * per_device - b, *x.shape[1:]), x.dtype)])
            return x.reshape(d, per_device, *x.shape[1:])

        args = [a if i in static_argnums else jax.tree.map(pad, a) for i, a in enumerate(args)]
        kw = {k: v if k in static_argnames else jax.tree.map(pad, v) for k, v in kw.items()}
        out = wrapped(*args, **kw)
        # Fetched before cutting, so the devices see only one output shape.
        unpad = lambda x: jax.device_get(x).reshape(-1, *x.shape[2:])[:b]  # noqa: E731
        return out if static_return else jax.tree.map(unpad, out)

    return run
