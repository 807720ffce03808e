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


def _names(filter_: Any) -> frozenset[str]:
    if filter_ is False or filter_ is None:
        return frozenset()
    if isinstance(filter_, str):
        return frozenset((filter_,))
    if isinstance(filter_, Iterable) and not isinstance(filter_, DenyList):
        names = set()
        for item in filter_:
            if not isinstance(item, str):
                raise errors.InvalidFilterError(
                    f"Invalid collection filter {filter_!r}: a list filter holds collection "
                    f"names, got {item!r}."
                )
            names.add(item)
        return frozenset(names)
    raise errors.InvalidFilterError(
        f"Invalid collection filter {filter_!r}: use True, False, a collection name, "
        "a list of names, or DenyList(...)."
    )


def _as_set(filter_: CollectionFilter) -> tuple[bool, frozenset]:
    """``(deny, names)``: the filter matches ``names``, or (deny) all collections but them."""
    if filter_ is True:
        return True, frozenset()
    if isinstance(filter_, DenyList):
        deny, names = _as_set(filter_.deny)
        return not deny, names
    return False, _names(filter_)


def _filter(deny: bool, names: frozenset) -> Any:
    names = tuple(sorted(names))
    if deny:
        return DenyList(names) if names else True
    return names


def normalize(filter_: CollectionFilter) -> Any:
    """``True``, a sorted name tuple, or ``DenyList(sorted name tuple)``."""
    return _filter(*_as_set(filter_))


def union(a: CollectionFilter, b: CollectionFilter) -> Any:
    """Collections matched by ``a`` or ``b``: what neither complement matches."""
    return _complement(intersect(_complement(a), _complement(b)))


def intersect(a: CollectionFilter, b: CollectionFilter) -> Any:
    """Collections matched by both ``a`` and ``b``."""
    (deny_a, a), (deny_b, b) = _as_set(a), _as_set(b)
    if deny_a and deny_b:
        return _filter(True, a | b)
    if deny_a or deny_b:  # the allowed names, less the denied ones
        return _filter(False, a - b if deny_b else b - a)
    return _filter(False, a & b)


def subtract(a: CollectionFilter, b: CollectionFilter) -> Any:
    """Collections matched by ``a`` but not by ``b``."""
    return intersect(a, _complement(b))


def _complement(filter_: CollectionFilter) -> Any:
    """The collections ``filter_`` does not match, normalized."""
    deny, names = _as_set(filter_)
    return _filter(not deny, names)


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
