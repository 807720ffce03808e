"""Checking and normalizing the arguments of ``init``/``apply``/``bind``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from minilinen import errors
from minilinen.core.frozen_dict import FrozenDict, _thaw
from minilinen.core.scope import DenyList, in_filter

__all__ = ["resolve_method", "capture_filter", "check_rngs", "collections_for", "merge_param"]


def resolve_method(cls: type, method: Any) -> Callable:
    if method is None:
        method = "__call__"
    if isinstance(method, str):
        fn = getattr(cls, method, None)
        if fn is None or not callable(fn):
            raise errors.ModuleAttributeError(
                f"{cls.__name__} has no method '{method}' to call in init/apply."
            )
        return fn
    if callable(method):
        return method
    raise errors.ApplyVariablesError(
        f"method must be a method name or a function, got {type(method).__name__}."
    )


def capture_filter(mutable: Any, capture: bool | Callable) -> tuple[Any, Callable | None]:
    if capture is False or capture is None:
        return mutable, None
    if capture is True:
        capture = _capture_calls
    if mutable is True or in_filter(mutable, "intermediates"):
        return mutable, capture
    if isinstance(mutable, DenyList):
        deny = mutable.deny
        deny = (deny,) if isinstance(deny, str) else tuple(deny or ())
        return DenyList(tuple(d for d in deny if d != "intermediates")), capture
    if mutable is False:
        return "intermediates", capture
    if isinstance(mutable, str):
        return (mutable, "intermediates"), capture
    return (*mutable, "intermediates"), capture


def _capture_calls(module: Any, method_name: str) -> bool:
    return method_name == "__call__"


def _is_key(x: Any) -> bool:
    if not isinstance(x, (jax.Array, np.ndarray)):
        return False
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return True
    return x.dtype == np.uint32 and x.ndim >= 1 and x.shape[-1] in (2, 4)


def check_rngs(rngs: Any, where: str) -> dict:
    if rngs is None:
        return {}
    if not isinstance(rngs, Mapping):
        if where == "init":
            rngs = {"params": rngs}
        else:
            raise errors.InvalidRngError(
                f"rngs passed to {where}() must be a dict of PRNG keys, such as "
                f"{{'dropout': jax.random.PRNGKey(0)}}; got {type(rngs).__name__}."
            )
    for stream, key in rngs.items():
        if not _is_key(key):
            raise errors.InvalidRngError(
                f"RNG stream '{stream}' passed to {where}() is not a PRNG key (got "
                f"{type(key).__name__} {getattr(key, 'dtype', '')} "
                f"{getattr(key, 'shape', '')}). Make one with jax.random.PRNGKey(seed) or "
                "jax.random.key(seed)."
            )
    return rngs


def collections_for(variables: Any, mutable: Any) -> dict:
    """The variables as a dict of collections; mutable ones deep-copied (we write them)."""
    if isinstance(variables, FrozenDict):
        variables = variables._dict
    elif not isinstance(variables, Mapping):
        raise errors.ApplyVariablesError(
            f"apply() expects variables as a dict of collections such as "
            f"{{'params': params}}, got {type(variables).__name__}."
        )
    out = {}
    for col, tree in variables.items():
        if not isinstance(tree, Mapping):
            raise errors.ApplyVariablesError(
                f"apply() expects variables as a dict of collections such as "
                f"{{'params': params}}, but its entry '{col}' is a "
                f"{type(tree).__name__}, not a dict. If you passed variables['params'], "
                "pass {'params': params} (or the whole variables dict) instead."
            )
        out[col] = _thaw(tree) if mutable is not False and in_filter(mutable, col) else tree
    return out


def merge_param(name: str, a: Any, b: Any) -> Any:
    """Returns whichever of the constructor value ``a`` and call value ``b`` is set."""
    if a is None and b is None:
        raise errors.MergeParamError(
            f"'{name}' was given neither to the constructor nor at call time; pass it to one "
            f"of them."
        )
    if a is not None and b is not None:
        raise errors.MergeParamError(
            f"'{name}' was given both to the constructor and at call time; pass it to just "
            f"one of them."
        )
    return a if b is None else b
