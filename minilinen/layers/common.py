"""Helpers every layer shares: dtype promotion and constructor/call argument merging."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from minilinen.call_args import merge_param
from minilinen.errors import LayerConfigError
from minilinen.typing import Array

__all__ = ["canonicalize_dtype", "promote_dtype", "merge_param", "canonicalize_tuple", "add_bias"]

_float32 = jnp.dtype(jnp.float32)


def canonicalize_dtype(*args: Any, dtype: Any = None, inexact: bool = True) -> Any:
    """The dtype a computation over ``args`` runs in: ``dtype`` or the promoted type."""
    if dtype is None:
        dtype = jnp.result_type(*[x for x in args if x is not None])
        if inexact and not jnp.issubdtype(dtype, jnp.inexact):
            dtype = jnp.promote_types(_float32, dtype)
    elif inexact and not jnp.issubdtype(dtype, jnp.inexact):
        raise LayerConfigError(
            f"dtype must be a floating or complex type, got {jnp.dtype(dtype)}; pass e.g. "
            f"dtype=jnp.float32."
        )
    return dtype


def promote_dtype(*args: Any, dtype: Any = None, inexact: bool = True) -> list[Any]:
    """Casts every non-None array in ``args`` to one dtype (see ``canonicalize_dtype``)."""
    # Fast path for the common case (all arrays already share the target dtype):
    # jnp.result_type and no-op casts cost tens of microseconds per layer call
    # in un-jitted code.
    common = dtype
    for x in args:
        if x is None:
            continue
        if not isinstance(x, jax.Array) or x.weak_type:
            break
        if common is None:
            common = x.dtype
        elif x.dtype != common:
            break
    else:
        if common is None or not inexact or _is_inexact(common):
            return list(args)
    dtype = canonicalize_dtype(*args, dtype=dtype, inexact=inexact)
    return [
        x
        if x is None or (isinstance(x, jax.Array) and x.dtype == dtype and not x.weak_type)
        else jnp.asarray(x, dtype)
        for x in args
    ]


@functools.cache  # the fast path asks once per layer call
def _is_inexact(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.inexact))


def canonicalize_tuple(x: Any) -> tuple:
    """An int becomes a 1-tuple; any iterable becomes a tuple."""
    if isinstance(x, int):
        return (x,)
    return tuple(x)


def add_bias(y: Array, bias: Array | None) -> Array:
    """``y + bias`` with the bias reshaped to full rank first, as Flax does (same jaxpr)."""
    return y if bias is None else y + jnp.reshape(bias, (1,) * (y.ndim - bias.ndim) + bias.shape)
