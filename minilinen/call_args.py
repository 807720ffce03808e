"""Checking and normalizing the arguments of ``init``/``apply``/``bind``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from minilinen import errors
from minilinen.core.frozen_dict import FrozenDict, _thaw
from minilinen.core.scope import DenyList, in_filter

__all__ = ["resolve_method", "capture_filter", "check_rngs", "collections_for", "merge_param"]


def resolve_method(module: Any, method: Any, module_type: type) -> Callable:
    """The function ``fn(module, *args)`` that init/apply runs for ``method=``."""
    cls = type(module)
    if method is None or isinstance(method, str):
        name = method or "__call__"
        method = getattr(cls, name, module.__dict__.get(name))
        if isinstance(method, module_type):  # a submodule field: Flax calls it
            return lambda m, *args, **kwargs: getattr(m, name)(*args, **kwargs)
        if method is None or getattr(method, "__self__", None) is cls:  # or type.__call__
            raise errors.ModuleAttributeError(
                f'"{cls.__name__}" object has no attribute "{name}" (no method \'{name}\' to '
                "call in init/apply)."
            )
        if not callable(method):
            raise errors.ApplyModuleInvalidMethodError(
                f"method='{name}': '{cls.__name__}.{name}' must be a callable, not "
                f"{type(method).__name__}."
            )
        return method
    if inspect.ismethod(method) and isinstance(method.__self__, module_type):
        return method.__func__  # model.encode: Flax runs it on the bound copy
    code = getattr(method, "__code__", None)
    if callable(method) and not (code and code.co_argcount == 0 and not code.co_flags & 4):
        return method
    raise errors.ApplyModuleInvalidMethodError(
        f"Cannot call apply(): method={method!r} must be a method name, or a function "
        "taking the module as its first argument."
    )


def capture_filter(mutable: Any, capture: bool | Callable) -> tuple[Any, Callable | None]:
    """``mutable`` widened to let ``capture_intermediates`` sow into 'intermediates'."""
    if capture is False or capture is None:
        return mutable, None
    if capture is True:
        capture = lambda module, method_name: method_name == "__call__"
    if mutable is True or in_filter(mutable, "intermediates"):
        return mutable, capture
    if isinstance(mutable, DenyList):
        deny = mutable.deny
        deny = (deny,) if isinstance(deny, str) else tuple(deny or ())
        return DenyList(tuple(d for d in deny if d != "intermediates")), capture
    cols = () if mutable is False else (mutable,) if isinstance(mutable, str) else tuple(mutable)
    return (*cols, "intermediates"), capture


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
    # Flax's exact wording: its own tests (and users' asserts) match it literally.
    if a is None and b is None:
        raise errors.MergeParamError(
            f'Parameter "{name}" must be passed to the constructor or at call time.'
        )
    if a is not None and b is not None:
        raise errors.MergeParamError(
            f'Parameter "{name}" was passed to the constructor and at call time. Should be '
            "passed just once."
        )
    return a if b is None else b
