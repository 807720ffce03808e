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

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax

from minilinen import errors
from minilinen.core.meta import AxisMetadata
from minilinen.core.scope import CollectionFilter, Frame, Scope
from minilinen.transforms.filters import group_collections, intersect, union
from minilinen.typing import In, Out

__all__ = ["Pack", "add_axis", "remove_axis", "split_keys", "as_tuple", "mapped_size"]
__all__ += ["In", "Out", "split_in_out"]


class Pack:
    """One lifted call on one scope (or a tuple of scopes): what goes into the
    transform, and back out.

    With one ``Scope`` each group is a ``{collection: tree}`` dict; with a tuple of
    scopes (a module that reaches modules bound elsewhere) each group is a tuple of
    such dicts, one per scope, and ``inner_scope`` returns a tuple of scopes.
    """

    __slots__ = ("scope", "scopes", "single", "out_filters", "mutable", "rng_paths")
    __slots__ += ("variable_groups", "rng_groups")

    def __init__(
        self,
        scope: Scope | tuple[Scope, ...],
        in_filters: tuple[CollectionFilter, ...],
        out_filters: tuple[CollectionFilter, ...],
        rng_filters: tuple[CollectionFilter, ...],
        rngs: Any = None,
        rng_path: tuple[str, ...] | None = None,
    ):
        self.single = isinstance(scope, Scope)
        self.scopes = (scope,) if self.single else tuple(scope)
        for s in self.scopes:
            if not s.frame.valid:
                s.raise_invalid()
        self.scope = self.scopes[0]
        self.out_filters = out_filters
        writable = functools.reduce(union, out_filters, ())
        self.mutable = intersect(self.scope.frame.mutable, writable)
        self.rng_paths = tuple(s.rng_path if rng_path is None else rng_path for s in self.scopes)
        # rngs: None (each scope's own streams), or one dict of streams per scope.
        per_rngs = [s.frame.rngs for s in self.scopes] if rngs is None else rngs
        self.variable_groups = self._join(
            [group_collections(s.collections(), in_filters) for s in self.scopes]
        )
        self.rng_groups = self._join([group_collections(r, rng_filters) for r in per_rngs])

    def _join(self, per_scope: list) -> tuple:
        """Per-scope group tuples -> per-filter groups (a dict, or a tuple over scopes)."""
        return per_scope[0] if self.single else tuple(zip(*per_scope))

    def _split(self, groups: tuple) -> list:
        if self.single:
            return [groups]
        return [tuple(g[i] for g in groups) for i in range(len(self.scopes))]

    def inner_scope(
        self, variable_groups: tuple, rng_groups: tuple, mutable: CollectionFilter = True
    ) -> Any:
        """Fresh root scopes over the given groups, continuing the outer paths."""
        inner = []
        for outer, groups, rng_group, rng_path in zip(
            self.scopes, self._split(variable_groups), self._split(rng_groups), self.rng_paths
        ):
            # The groups merged, and copied so the inner frame can write them.
            variables = group_collections({c: t for g in groups for c, t in g.items()}, (True,))[0]
            rngs = {stream: key for g in rng_group for stream, key in g.items()}
            frame = Frame(variables, rngs, intersect(self.mutable, mutable), outer.frame.flags)
            frame.capture = outer.frame.capture
            scope = Scope(frame, None, outer.name, path=outer.path, rng_path=rng_path)
            # Shared with the outer scope: every trace of the body continues Flax's counters.
            scope.rng_counters = outer.rng_counters
            inner.append(scope)
        return inner[0] if self.single else tuple(inner)

    def run(self, fn: Callable, variable_groups: tuple, rng_groups: tuple, *args, **kw) -> tuple:
        """``fn(inner scope(s), *args)`` over the given groups: its output and the
        collections it wrote, grouped by the output filters."""
        inner = self.inner_scope(variable_groups, rng_groups)
        return fn(inner, *args, **kw), self.repack(inner)

    def repack(self, inner: Any) -> tuple:
        """The inner frames' writable collections, grouped by the output filters."""
        scopes = (inner,) if self.single else inner
        for scope in scopes:
            scope.frame.valid = False
        return self._join([group_collections(s.frame.mutated(), self.out_filters) for s in scopes])

    def publish(self, out_groups: tuple) -> None:
        """Writes the transform's output collections back into the outer scopes."""
        for scope, groups in zip(self.scopes, self._split(out_groups)):
            for group in groups:
                for col, tree in group.items():
                    if not scope.is_mutable_collection(col):
                        continue  # a transform may hand back collections it only read
                    for name, value in tree.items():
                        scope.put_variable(col, name, value)

    def each(self, fn: Callable, group: Any, *rest: Any) -> Any:
        """``fn`` applied to one group per scope (the group itself for one scope)."""
        if self.single:
            return fn(group, *rest)
        return tuple(fn(*g) for g in zip(group, *rest))


def as_tuple(value: Any) -> tuple:
    """Argnums and names as a tuple: ``None`` is none, one int or string is one."""
    if value is None:
        return ()
    return (value,) if isinstance(value, (str, int)) else tuple(value)


def split_in_out(variable_axes: Mapping) -> tuple[tuple, tuple, tuple, tuple]:
    """``variable_axes`` as (in filters, in axes, out filters, out axes)."""
    ins = {f: a for f, a in variable_axes.items() if not isinstance(a, Out)}
    outs = {f: a for f, a in variable_axes.items() if not isinstance(a, In)}
    axis = lambda a: a.axis if isinstance(a, (In, Out)) else a  # noqa: E731
    return tuple(ins), tuple(map(axis, ins.values())), tuple(outs), tuple(map(axis, outs.values()))


def mapped_size(axes: Any, trees: Any, given: int | None, what: str, option: str) -> int:
    """The size of the mapped axis (``given``, or the one every mapped leaf agrees on);
    ``axes`` is a prefix tree of ``trees`` whose None or ``nn.broadcast`` leaves map nothing."""
    sizes: set[int] = set()

    def find(axis: Any, x: Any) -> None:
        leaves = [] if not isinstance(axis, int) else jax.tree_util.tree_leaves(x)
        if leaves:
            sizes.add(jax.numpy.shape(leaves[0])[axis])

    jax.tree_util.tree_map(
        find, axes, trees, is_leaf=lambda x: not isinstance(x, (tuple, list, dict))
    )
    if given is not None:
        return given
    if len(sizes) != 1:
        why = f"have different lengths {sorted(sizes)}" if sizes else "are none: nothing is mapped"
        raise errors.TransformError(
            f"nn.{what} cannot infer how many iterations to run: its mapped inputs {why} "
            f"along their axes. Give them all the same length, or pass {option}=N."
        )
    return sizes.pop()


def split_keys(group: Any, n: int) -> Any:
    """``n`` keys from each root key of an RNG group, as Flax splits a stream for each
    iteration."""
    return jax.tree_util.tree_map(lambda key: jax.random.split(key, n), group)


def add_axis(tree: Any, axis: int, params: dict) -> Any:
    """Tells every metadata box in ``tree`` that its value gained ``axis``."""
    return _tell_boxes(tree, "add_axis", axis, params)


def remove_axis(tree: Any, axis: int, params: dict) -> Any:
    """Tells every metadata box in ``tree`` that its value lost ``axis``."""
    return _tell_boxes(tree, "remove_axis", axis, params)


def _tell_boxes(tree: Any, name: str, axis: int | None, params: dict) -> Any:
    if axis is None:  # not mapped: the boxes stay as they are
        return tree

    def tell(box: Any) -> Any:
        if not isinstance(box, AxisMetadata):
            return box
        if not hasattr(box, name):
            raise errors.TransformError(
                f"{type(box).__name__} boxes a variable mapped over by a lifted transform "
                f"but has no {name}(index, params) method to update its metadata."
            )
        return getattr(box, name)(axis, params)

    return jax.tree_util.tree_map(tell, tree, is_leaf=lambda x: isinstance(x, AxisMetadata))
