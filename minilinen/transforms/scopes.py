"""``nn.share_scope`` and ``nn.compact_name_scope``: choosing the scope a module's
variables live in, without changing the module's code."""

from __future__ import annotations

import functools
from collections.abc import Callable

from minilinen import errors
from minilinen.module import Module, compact

__all__ = ["share_scope", "compact_name_scope"]


def share_scope(module: Module, other: Module, /) -> None:
    """Makes ``module`` and ``other`` keep their variables in one scope: ``other``'s,
    unless ``other`` lives under ``module`` (then ``module``'s)."""
    if module.scope is None or other.scope is None:
        raise errors.UnboundModuleError("nn.share_scope needs two bound modules; call it in setup.")
    inside = other.scope
    while inside is not None and inside is not module.scope:
        inside = inside.parent
    target, new = (other, module.scope) if inside is not None else (module, other.scope)
    old = target.scope
    object.__setattr__(target, "scope", new)
    for child in old.children.values():  # submodules made so far move along
        new.reserve(child.name)
        child.parent = new
        child._cols.clear()


class _NameScope(Module):
    """The child module a compact_name_scope method runs in, named after the method."""

    fn: Callable
    owner: Callable

    @compact
    def __call__(self, *args, **kwargs):
        return self.fn(self.owner(), *args, **kwargs)


def compact_name_scope(fun: Callable) -> Callable:
    """Marks a method whose inline submodules live under a child scope named after it
    (variables it makes through ``self`` stay in the module's own scope)."""

    @functools.wraps(fun)
    def method(self: Module, *args, **kwargs):
        # A fresh child per call, as a compact submodule is: its names and keys repeat.
        scope = self._require_scope(fun.__name__).push(fun.__name__, reuse=True)
        return _NameScope(fun, lambda: self, parent=scope, name=fun.__name__)(*args, **kwargs)

    method.nowrap = True
    return method
