"""Lifting functions of a module, ``fn(module, *args)``, for the transforms that take
the module as an argument (``nn.vjp(fn, mdl, x)``, ``nn.cond(pred, f, g, mdl, x)``).

Each ``fn`` runs as a method of a copy of ``mdl`` bound to the transform's inner
scope, so submodules made inside are named and keyed as if made in ``mdl`` itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from minilinen import errors
from minilinen.module import Module, _wrap_method
from minilinen.transforms.lift import Pack
from minilinen.transforms.module_lift import bound_scope, call_on_inner

__all__ = ["lift_fns", "run_inner"]


def lift_fns(fns: Sequence[Callable], mdl: Any, where: str, *filters: tuple) -> tuple[Pack, list]:
    """A ``Pack`` of ``mdl``'s scope with ``filters`` (in, out, rngs), and each ``fn`` as
    a function ``(inner_scope, *args)``."""
    if not isinstance(mdl, Module):
        raise errors.TransformError(f"nn.{where} lifts a Module, got {type(mdl).__name__}.")
    scope = bound_scope(mdl, where)
    bodies = []
    for fn in fns:
        fn = getattr(fn, "__func__", fn)  # self.method: run it on the inner copy instead
        if not getattr(fn, "method_handler_wrapped", False):
            fn = _wrap_method(fn, getattr(fn, "__name__", where))
        bodies.append(functools.partial(call_on_inner, mdl, None, fn, where))
    return Pack(scope, *filters), bodies


def run_inner(pack: Pack, body: Callable, groups: tuple, rngs: tuple, *args, mutable=True) -> tuple:
    """``body`` on an inner scope over ``groups``: its output and written collections."""
    inner = pack.inner_scope(groups, rngs, mutable)
    y = body(inner, *args)
    return y, pack.repack(inner)
