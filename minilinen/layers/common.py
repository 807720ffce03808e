"""Helpers every layer shares: dtype promotion and constructor/call argument merging."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from minilinen.errors import LayerConfigError, MergeParamError

__all__ = ["canonicalize_dtype", "promote_dtype", "merge_param", "canonicalize_tuple"]

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
    dtype = canonicalize_dtype(*args, dtype=dtype, inexact=inexact)
    # Arrays already in the target dtype pass through: the cast would be a no-op
    # that still costs a dispatch in un-jitted code.
    return [
        x
        if x is None or (isinstance(x, jax.Array) and x.dtype == dtype and not x.weak_type)
        else jnp.asarray(x, dtype)
        for x in args
    ]


def merge_param(name: str, a: Any, b: Any) -> Any:
    """Returns whichever of the constructor value ``a`` and call value ``b`` is set."""
    if a is None and b is None:
        raise MergeParamError(
            f"'{name}' was given neither to the constructor nor at call time; pass it to one "
            f"of them."
        )
    if a is not None and b is not None:
        raise MergeParamError(
            f"'{name}' was given both to the constructor and at call time; pass it to just "
            f"one of them."
        )
    return a if b is None else b


def canonicalize_tuple(x: Any) -> tuple:
    """An int becomes a 1-tuple; any iterable becomes a tuple."""
    if isinstance(x, int):
        return (x,)
    return tuple(x)
