"""Frozen dataclasses that are JAX pytrees: ``dataclass``, ``PyTreeNode``, ``field``.

Fields are pytree children unless declared ``field(pytree_node=False)``, in
which case they are static (part of the tree's structure, compared by value).
Registration goes through ``jax.tree_util.register_dataclass`` so flattening
runs in JAX's C++ code rather than through Python callbacks.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import jax

__all__ = ["dataclass", "PyTreeNode", "field"]

T = TypeVar("T")


def field(pytree_node: bool = True, **kwargs: Any) -> Any:
    """A dataclass field; ``pytree_node=False`` makes it static metadata."""
    metadata = {**kwargs.pop("metadata", {}), "pytree_node": pytree_node}
    return dataclasses.field(metadata=metadata, **kwargs)


def _replace(self: T, **updates: Any) -> T:
    """Returns a copy with the given fields replaced."""
    return dataclasses.replace(self, **updates)


def dataclass(cls: type[T] | None = None, **kwargs: Any) -> Any:
    """Turns ``cls`` into a frozen dataclass registered as a pytree, with ``replace``."""
    if cls is None:
        return lambda c: dataclass(c, **kwargs)
    if "_minilinen_data_fields" in cls.__dict__:
        return cls
    kwargs.setdefault("frozen", True)
    data_cls = dataclasses.dataclass(cls, **kwargs)
    fields = [f for f in dataclasses.fields(data_cls) if f.init]
    data_fields = [f.name for f in fields if f.metadata.get("pytree_node", True)]
    meta_fields = [f.name for f in fields if not f.metadata.get("pytree_node", True)]
    data_cls.replace = _replace
    jax.tree_util.register_dataclass(data_cls, data_fields=data_fields, meta_fields=meta_fields)
    data_cls._minilinen_data_fields = tuple(data_fields)  # what a state dict holds of it
    return data_cls


class PyTreeNode:
    """Base class: every subclass becomes a frozen pytree dataclass."""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__()
        dataclass(cls, **kwargs)

    replace = _replace  # set again per subclass by dataclass(); here for type checkers
