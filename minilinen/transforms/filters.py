"""Collection filters as sets: union, intersection, difference, emptiness.

A lifted transform decides which collections go in, which come out and which
are writable inside by combining the user's filters. Filters are normalized to
``True``, a sorted tuple of names, or ``DenyList(sorted tuple)``, so the result
is hashable (``nn.jit`` keys its cache on it) and emptiness is decidable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from minilinen import errors
from minilinen.core.frozen_dict import _thaw
from minilinen.core.scope import CollectionFilter, DenyList, in_filter

__all__ = ["normalize", "union", "intersect", "subtract", "is_empty", "group_collections"]


def _names(filter_: Any) -> tuple[str, ...]:
    if filter_ is False or filter_ is None:
        return ()
    if isinstance(filter_, str):
        return (filter_,)
    if isinstance(filter_, Iterable) and not isinstance(filter_, DenyList):
        names = set()
        for item in filter_:
            if not isinstance(item, str):
                raise errors.InvalidFilterError(
                    f"Invalid collection filter {filter_!r}: a list filter holds collection "
                    f"names, got {item!r}."
                )
            names.add(item)
        return tuple(sorted(names))
    raise errors.InvalidFilterError(
        f"Invalid collection filter {filter_!r}: use True, False, a collection name, "
        "a list of names, or DenyList(...)."
    )


def normalize(filter_: CollectionFilter) -> Any:
    """``True``, a sorted name tuple, or ``DenyList(sorted name tuple)``."""
    if filter_ is True:
        return True
    if isinstance(filter_, DenyList):
        deny = normalize(filter_.deny)
        if deny is True:
            return ()
        if isinstance(deny, DenyList):
            return deny.deny
        return DenyList(deny) if deny else True
    return _names(filter_)


def union(a: CollectionFilter, b: CollectionFilter) -> Any:
    """Collections matched by ``a`` or ``b``: what neither complement matches."""
    return _complement(intersect(_complement(a), _complement(b)))


def intersect(a: CollectionFilter, b: CollectionFilter) -> Any:
    """Collections matched by both ``a`` and ``b``."""
    a, b = normalize(a), normalize(b)
    if a is True:
        return b
    if b is True:
        return a
    if isinstance(a, DenyList) and isinstance(b, DenyList):
        return normalize(DenyList(set(a.deny) | set(b.deny)))
    if isinstance(b, DenyList):
        a, b = b, a
    if isinstance(a, DenyList):
        return tuple(sorted(set(b) - set(a.deny)))
    return tuple(sorted(set(a) & set(b)))


def subtract(a: CollectionFilter, b: CollectionFilter) -> Any:
    """Collections matched by ``a`` but not by ``b``."""
    return intersect(a, _complement(b))


def _complement(filter_: CollectionFilter) -> Any:
    """The collections ``filter_`` does not match, normalized."""
    filter_ = normalize(filter_)
    if filter_ is True:
        return ()
    if isinstance(filter_, DenyList):
        return filter_.deny
    return DenyList(filter_) if filter_ else True


def is_empty(filter_: CollectionFilter) -> bool:
    """Whether ``filter_`` matches no collection at all."""
    return normalize(filter_) == ()


def group_collections(
    xs: Mapping[str, Any], filters: tuple[CollectionFilter, ...]
) -> tuple[dict, ...]:
    """Splits ``xs`` by filter, each collection going to the first filter matching it;
    trees are copied into plain dicts (leaves shared) so the groups can be written."""
    groups: tuple[dict, ...] = tuple({} for _ in filters)
    for col, tree in xs.items():
        for group, filter_ in zip(groups, filters):
            if in_filter(filter_, col):
                group[col] = _thaw(tree)
                break
    return groups
