"""Logical axis names: ``'embed'``, ``'mlp'`` mapped to mesh axes by rules.

``logical_axis_rules(rules)`` sets, for a ``with`` block, which mesh axis each
logical name shards over; ``logical_to_mesh_axes`` applies them to one array's
names, ``with_logical_constraint`` turns them into sharding constraints, and
``with_logical_partitioning`` boxes a parameter in a :class:`LogicallyPartitioned`.
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from minilinen import errors, struct
from minilinen.core.meta import (
    PARTITION_NAME,
    Partitioned,
    _with_sharding_constraint,  # Flax's tests patch it here: call it by this module's name
    boxed_initializer,
    get_partition_spec,
    get_sharding,
    global_mesh_defined,
    unbox,
    with_partitioning,
)

__all__ = [  # with the metadata-box names of core.meta that nn exports beside them
    "PARTITION_NAME",
    "Partitioned",
    "with_partitioning",
    "unbox",
    "get_partition_spec",
    "get_sharding",
    "LogicallyPartitioned",
    "with_logical_partitioning",
    "logical_axis_rules",
    "set_logical_axis_rules",
    "get_logical_axis_rules",
    "logical_to_mesh_axes",
    "logical_to_mesh",
    "logical_to_mesh_sharding",
    "with_logical_constraint",
    "RulesFallback",
]

LogicalRules = Sequence[tuple[str, Any]]


_rules = threading.local()  # .rules: the rules set on this thread


def set_logical_axis_rules(rules: LogicalRules) -> None:
    """Sets the logical-to-mesh axis rules for this thread."""
    _rules.rules = rules


def get_logical_axis_rules() -> LogicalRules:
    """The logical-to-mesh axis rules in effect."""
    return getattr(_rules, "rules", ())


@contextlib.contextmanager
def logical_axis_rules(rules: LogicalRules) -> Iterator[None]:
    """Maps logical axis names to mesh axes inside the ``with`` block."""
    old = get_logical_axis_rules()
    _rules.rules = rules
    try:
        yield
    finally:
        _rules.rules = old


_UNASSIGNED = object()  # a logical name no rule has mapped (yet)


def _mesh_axes(names: Sequence[Any], rules: LogicalRules | None) -> tuple[PartitionSpec, bool]:
    """The mesh axes of logical ``names`` (None where no rule maps a name), and whether
    some name was left unmapped."""
    rules = get_logical_axis_rules() if rules is None else rules
    names = list(names)
    repeated = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    if repeated:
        raise errors.TransformError(f"Names {repeated} occur more than once in {tuple(names)}.")
    if not isinstance(rules, (tuple, list)):
        raise errors.TransformError(f"Axis rules must be (logical, mesh axes) pairs, not {rules!r}")
    result = [_UNASSIGNED if isinstance(n, str) else n for n in names]
    used: set = set()
    for logical, mesh_axes in rules:
        if logical not in names:
            continue
        pos = names.index(logical)
        wanted = set(jax.tree_util.tree_leaves(mesh_axes)) - {None, PartitionSpec.UNCONSTRAINED}
        # First matching rule wins; a mesh axis shards at most one dimension.
        if result[pos] is _UNASSIGNED and not (wanted & used):
            result[pos] = mesh_axes
            used |= wanted
    spec = PartitionSpec(*(None if a is _UNASSIGNED else a for a in result))
    return spec, any(a is _UNASSIGNED for a in result)


def logical_to_mesh_axes(names: Any, rules: LogicalRules | None = None) -> PartitionSpec | None:
    """The mesh ``PartitionSpec`` for logical axis ``names`` (unmatched names: None)."""
    return None if names is None else _mesh_axes(names, rules)[0]


def _is_spec(x: Any) -> bool:
    return isinstance(x, PartitionSpec)


def logical_to_mesh(tree: Any, rules: LogicalRules | None = None) -> Any:
    """Maps a tree of logical ``PartitionSpec``s to mesh ``PartitionSpec``s."""
    return jax.tree_util.tree_map(lambda s: logical_to_mesh_axes(s, rules), tree, is_leaf=_is_spec)


def logical_to_mesh_sharding(tree: Any, mesh: Mesh, rules: LogicalRules | None = None) -> Any:
    """Maps a tree of logical ``PartitionSpec``s to ``NamedSharding``s on ``mesh``."""
    return jax.tree_util.tree_map(
        lambda s: NamedSharding(mesh, s), logical_to_mesh(tree, rules), is_leaf=_is_spec
    )


class RulesFallback(enum.Enum):
    """What ``with_logical_constraint`` does with a logical name no rule maps."""

    AXIS_IS_UNSHARDED = "axis_is_unsharded"
    RAISE_ERROR = "raise_error"
    NO_CONSTRAINT = "no_constraint"


def _is_logical_names(n: Any) -> bool:
    axis = (str, type(None), type(PartitionSpec.UNCONSTRAINED))
    return n is None or (isinstance(n, tuple) and all(isinstance(a, axis) for a in n))


def with_logical_constraint(
    x: Any,
    logical_axis_resources: Any,
    rules: LogicalRules | None = None,
    mesh: Mesh | None = None,
    fallback: RulesFallback = RulesFallback.AXIS_IS_UNSHARDED,
) -> Any:
    """``jax.lax.with_sharding_constraint`` with logical axis names."""
    rules = get_logical_axis_rules() if rules is None else rules
    if not rules or logical_axis_resources is None:
        return x

    def one(names: Any, leaf: Any) -> Any:
        if names is None:
            return _with_sharding_constraint(leaf, None, mesh=mesh)
        spec, unmapped = _mesh_axes(names, rules)
        if unmapped and fallback is RulesFallback.RAISE_ERROR:
            raise errors.TransformError(f"Logical axis names {tuple(names)} match no rule.")
        if unmapped and fallback is RulesFallback.NO_CONSTRAINT:
            return leaf
        return _with_sharding_constraint(leaf, spec, mesh=mesh)

    return jax.tree_util.tree_map(one, logical_axis_resources, x, is_leaf=_is_logical_names)


class LogicallyPartitioned(Partitioned):
    """A ``Partitioned`` whose names are logical, mapped to mesh axes by rules."""

    rules: Any = struct.field(default=None, pytree_node=False)

    def unbox(self, apply_constraint: bool = True) -> Any:
        """The value, constrained to its mapped sharding when a mesh is known."""
        if apply_constraint and (self.mesh is not None or global_mesh_defined()):
            return with_logical_constraint(
                self.value, self.get_partition_spec(), rules=self.rules, mesh=self.mesh
            )
        return self.value


def with_logical_partitioning(
    fn: Callable,
    names: Sequence[Any],
    mesh: Mesh | None = None,
    rules: LogicalRules | None = None,
) -> Callable[..., LogicallyPartitioned]:
    """Wraps an initializer so its value comes boxed with logical axis ``names``."""
    rules = None if rules is None else tuple(rules)
    return boxed_initializer(LogicallyPartitioned, fn, tuple(names), mesh, rules)
