"""Lifting a function of a scope into a JAX transform.

A lifted call on scope ``S`` turns ``S``'s variables (grouped by collection
filter) and RNG streams (root keys, grouped by stream filter) into plain
pytrees, which the JAX transform maps, splits or closes over. Inside, the body
runs on an inner ``Frame`` built from those trees, whose root ``Scope``
continues ``S``'s path and shares ``S``'s RNG counters: a key made inside is
``fold_in_static(inner_root_key, rng_path + (count,))`` exactly as Flax makes
it, so parameters come out bit-identical. Afterwards the inner frame's writable
collections are grouped again and written back into ``S``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from minilinen import errors
from minilinen.core.meta import AxisMetadata
from minilinen.core.scope import CollectionFilter, Frame, Scope
from minilinen.transforms.filters import group_collections, intersect, is_empty, union

__all__ = ["Pack", "add_axis", "remove_axis", "split_key"]


class Pack:
    """One lifted call on one scope: what goes into the transform, and back out."""

    __slots__ = (
        "scope",
        "out_filters",
        "mutable",
        "rng_path",
        "variable_groups",
        "rng_groups",
    )

    def __init__(
        self,
        scope: Scope,
        in_filters: tuple[CollectionFilter, ...],
        out_filters: tuple[CollectionFilter, ...],
        rng_filters: tuple[CollectionFilter, ...],
        rngs: dict | None = None,
        rng_path: tuple[str, ...] | None = None,
    ):
        frame = scope.frame
        if not frame.valid:
            scope.raise_invalid()
        self.scope = scope
        self.out_filters = out_filters
        writable: Any = ()
        for filter_ in out_filters:
            writable = union(writable, filter_)
        self.mutable = intersect(frame.mutable, writable)
        self.rng_path = scope.rng_path if rng_path is None else rng_path
        self.variable_groups = group_collections(scope.collections(), in_filters)
        self.rng_groups = group_collections(frame.rngs if rngs is None else rngs, rng_filters)

    def inner_scope(
        self, variable_groups: tuple, rng_groups: tuple, mutable: CollectionFilter = True
    ) -> Scope:
        """A fresh root scope over the given groups, continuing the outer path."""
        outer = self.scope
        variables: dict = {}
        for group in variable_groups:
            variables.update(group_collections(group, (True,))[0])
        rngs: dict = {}
        for group in rng_groups:
            rngs.update(group)
        frame = Frame(variables, rngs, intersect(self.mutable, mutable), outer.frame.flags)
        frame.capture = outer.frame.capture
        inner = Scope(frame, None, outer.name, path=outer.path, rng_path=self.rng_path)
        # Shared with the outer scope: every trace of the body continues Flax's counters.
        inner.rng_counters = outer.rng_counters
        return inner

    def has_mutable(self, mutable: CollectionFilter = True) -> bool:
        """Whether any collection is writable inside (for ``map_variables(init=True)``)."""
        return not is_empty(intersect(self.mutable, mutable))

    def repack(self, inner: Scope) -> tuple[dict, ...]:
        """The inner frame's writable collections, grouped by the output filters."""
        frame = inner.frame
        frame.valid = False
        mutated = {col: tree for col, tree in frame.variables.items() if frame.is_mutable(col)}
        return group_collections(mutated, self.out_filters)

    def publish(self, out_groups: tuple[dict, ...]) -> None:
        """Writes the transform's output collections back into the outer scope."""
        scope = self.scope
        for group in out_groups:
            for col, tree in group.items():
                if not scope.is_mutable_collection(col):
                    continue  # a transform may hand back collections it only read
                for name, value in tree.items():
                    scope.put_variable(col, name, value)


def split_key(key: jax.Array, n: int) -> jax.Array:
    """``n`` keys from one root key, as Flax splits a stream for each iteration."""
    return jax.random.split(key, n)


def _map_boxes(fn: Callable, tree: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x: fn(x) if isinstance(x, AxisMetadata) else x,
        tree,
        is_leaf=lambda x: isinstance(x, AxisMetadata),
    )


def add_axis(tree: Any, axis: int, params: dict) -> Any:
    """Tells every metadata box in ``tree`` that its value gained ``axis``."""
    return _map_boxes(lambda box: _box_method(box, "add_axis")(axis, params), tree)


def remove_axis(tree: Any, axis: int, params: dict) -> Any:
    """Tells every metadata box in ``tree`` that its value lost ``axis``."""
    return _map_boxes(lambda box: _box_method(box, "remove_axis")(axis, params), tree)


def _box_method(box: AxisMetadata, name: str) -> Callable:
    method = getattr(box, name, None)
    if method is None:
        raise errors.TransformError(
            f"{type(box).__name__} boxes a variable mapped over by a lifted transform "
            f"but has no {name}(index, params) method to update its metadata."
        )
    return method
