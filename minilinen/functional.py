"""Functional forms of init/apply: ``nn.init(fn, module)`` runs ``fn(bound_module, ...)``.

``fn`` receives the module bound to the variables (so it can call several of its
methods); the result is a plain function, ready for ``jax.jit``. ``lazy_init``
evaluates a function only as far as its concrete inputs decide, which is how
``Module.lazy_init`` initializes from ``jax.ShapeDtypeStruct`` inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

from minilinen import errors
from minilinen.core.scope import DenyList
from minilinen.jax_utils import partial_eval

__all__ = ["apply", "init", "init_with_output", "lazy_init"]

# init() writes every collection except intermediates unless asked to capture them.
_INIT_MUTABLE = DenyList("intermediates")


def _with_method(run: Callable, fn: Callable, mutable: Any, capture: Any) -> Callable:
    @functools.wraps(fn)
    def wrapper(first: Any, *args: Any, **kw: Any) -> Any:
        return run(first, *args, method=fn, mutable=mutable, capture_intermediates=capture, **kw)

    return wrapper


def apply(fn: Callable, module: Any, mutable=False, capture_intermediates=False) -> Callable:
    """``(variables, *args, rngs=None, **kwargs) -> fn(bound module, *args, **kwargs)``."""
    return _with_method(module.apply, fn, mutable, capture_intermediates)


def init_with_output(fn, module, mutable=_INIT_MUTABLE, capture_intermediates=False) -> Callable:
    """``(rngs, *args, **kwargs) -> (fn's output, variables)``."""
    return _with_method(module.init_with_output, fn, mutable, capture_intermediates)


def init(fn: Callable, module: Any, mutable=_INIT_MUTABLE, capture_intermediates=False) -> Callable:
    """``(rngs, *args, **kwargs) -> variables`` created by running ``fn``."""
    return _with_method(module.init, fn, mutable, capture_intermediates)


def lazy_init(fn: Callable) -> Callable:
    """``fn`` run only for what its concrete inputs decide; ``jax.ShapeDtypeStruct``
    inputs give shapes and nothing computed from them is run."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Known outputs were computed eagerly while tracing, as a plain init computes them.
        out = partial_eval(lambda a, k: fn(*a, **k), args, kwargs)
        if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(out)):
            raise errors.LazyInitError(
                "lazy_init: a variable depends on the value of an input given as a "
                "jax.ShapeDtypeStruct; pass that input as a real array."
            )
        return out

    return wrapper
