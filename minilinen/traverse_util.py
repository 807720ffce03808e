"""Flattening nested dicts to path-keyed dicts and back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["flatten_dict", "unflatten_dict", "empty_node", "path_aware_map"]


class _EmptyNode:
    """Marks an empty sub-dict in a flattened dict (``keep_empty_nodes=True``)."""

    def __repr__(self) -> str:
        return "empty_node"


empty_node = _EmptyNode()


def flatten_dict(
    xs: Mapping,
    keep_empty_nodes: bool = False,
    is_leaf: Any = None,
    sep: str | None = None,
) -> dict:
    """Flattens nested mappings into ``{path: leaf}``.

    Args:
      keep_empty_nodes: keep empty sub-dicts as ``empty_node`` leaves.
      is_leaf: ``is_leaf(path, value) -> bool`` stops descent early.
      sep: join path keys with ``sep`` into a string instead of a tuple.
    """
    if not isinstance(xs, Mapping):
        raise TypeError(f"flatten_dict expects a mapping, got {type(xs).__name__}.")
    flat: dict = {}

    def walk(node: Mapping, prefix: tuple) -> None:
        for key, value in node.items():
            path = prefix + (key,)
            descend = isinstance(value, Mapping) and not (is_leaf and is_leaf(path, value))
            if descend and value:
                walk(value, path)
            elif descend and keep_empty_nodes:
                flat[_key(path, sep)] = empty_node
            elif not descend:
                flat[_key(path, sep)] = value

    walk(xs, ())
    return flat


def _key(path: tuple, sep: str | None) -> Any:
    return path if sep is None else sep.join(str(p) for p in path)


def unflatten_dict(xs: Mapping, sep: str | None = None) -> dict:
    """Inverts ``flatten_dict``: ``{path: leaf}`` back into nested dicts."""
    if not isinstance(xs, Mapping):
        raise TypeError(f"unflatten_dict expects a mapping, got {type(xs).__name__}.")
    nested: dict = {}
    for path, value in xs.items():
        if sep is not None:
            path = tuple(path.split(sep))
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = {} if value is empty_node else value
    return nested


def path_aware_map(f: Any, nested_dict: Mapping) -> dict:
    """Maps ``f(path, leaf)`` over a nested dict (``path`` a tuple of keys); empty
    sub-dicts stay empty."""
    flat = flatten_dict(nested_dict, keep_empty_nodes=True)
    return unflatten_dict({k: v if v is empty_node else f(k, v) for k, v in flat.items()})
