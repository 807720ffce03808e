"""Partitioning metadata: parameters that know how they are sharded.

``with_partitioning(init_fn, names)`` makes a parameter initializer whose
values come boxed in a :class:`Partitioned` holding the mesh axis name of each
array dimension. Modules read the plain value (``Module.param`` unboxes); the
variable trees keep the boxes, so ``get_partition_spec(variables)`` turns them
into ``jax.sharding.PartitionSpec``s and ``get_sharding(variables, mesh)`` into
``NamedSharding``s for ``jax.jit(..., out_shardings=...)``. Logical names
(``'embed'``, ``'mlp'``) map to mesh axes through ``logical_axis_rules``.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from minilinen import errors, struct
from minilinen.core.meta import AxisMetadata

__all__ = [
    "PARTITION_NAME",
    "Partitioned",
    "LogicallyPartitioned",
    "with_partitioning",
    "with_logical_partitioning",
    "unbox",
    "get_partition_spec",
    "get_sharding",
    "logical_axis_rules",
    "set_logical_axis_rules",
    "get_logical_axis_rules",
    "logical_to_mesh_axes",
    "logical_to_mesh",
    "logical_to_mesh_sharding",
    "with_logical_constraint",
    "RulesFallback",
]

# The key of ``metadata_params`` naming the axis nn.scan/nn.vmap add to a box.
PARTITION_NAME = "partition_name"

LogicalRules = Sequence[tuple[str, Any]]


def _mesh_defined() -> bool:
    return not jax.sharding.get_abstract_mesh().empty


class Partitioned(struct.PyTreeNode, AxisMetadata):
    """A variable's value with the mesh axis (or None) of each of its dimensions."""

    value: Any
    names: tuple = struct.field(pytree_node=False)
    mesh: Mesh | None = struct.field(default=None, pytree_node=False)

    def __post_init__(self) -> None:
        if not isinstance(self.names, tuple):  # a list would not hash as static metadata
            object.__setattr__(self, "names", tuple(self.names))

    def unbox(self, apply_constraint: bool = True) -> Any:
        """The value, constrained to its sharding when a mesh is known."""
        if apply_constraint and (self.mesh is not None or _mesh_defined()):
            spec = self.get_partition_spec()
            target = spec if self.mesh is None else NamedSharding(self.mesh, spec)
            return jax.lax.with_sharding_constraint(self.value, target)
        return self.value

    def replace_boxed(self, value: Any) -> Partitioned:
        """The same metadata around a new value."""
        return self.replace(value=value)

    def _axis_name(self, params: dict) -> Any:
        if PARTITION_NAME not in params:
            raise errors.PartitioningUnspecifiedError(
                f"A Partitioned variable (names={self.names}) is mapped over by nn.scan or "
                "nn.vmap, which adds an axis to it; say which mesh axis (or None) with "
                f"metadata_params={{nn.PARTITION_NAME: 'layers'}}."
            )
        return params[PARTITION_NAME]

    def add_axis(self, index: int, params: dict) -> Partitioned:
        """The box after its value gained a dimension at ``index``."""
        names = list(self.names)
        names += [None] * (index - len(names))
        names.insert(index, self._axis_name(params))
        return self.replace(names=tuple(names))

    def remove_axis(self, index: int, params: dict) -> Partitioned:
        """The box after its value lost the dimension at ``index``."""
        names = list(self.names)
        removed = names.pop(index)
        expected = self._axis_name(params)
        if removed != expected:
            raise errors.TransformError(
                f"Removing axis {index} of a Partitioned variable named {self.names}: it is "
                f"partitioned as {removed!r}, but metadata_params names it {expected!r}."
            )
        return self.replace(names=tuple(names))

    def get_partition_spec(self) -> PartitionSpec:
        """The ``PartitionSpec`` of the value."""
        return PartitionSpec(*self.names)

    def get_sharding(self, mesh: Mesh) -> NamedSharding:
        """The ``NamedSharding`` of the value on ``mesh``."""
        return NamedSharding(mesh, self.get_partition_spec())


def with_partitioning(
    fn: Callable, names: Sequence[Any], mesh: Mesh | None = None
) -> Callable[..., Partitioned]:
    """Wraps an initializer so its value comes boxed with mesh axis ``names``."""

    @functools.wraps(fn)
    def init(*args: Any, **kwargs: Any) -> Partitioned:
        return Partitioned(fn(*args, **kwargs), tuple(names), mesh)

    return init


def _is_box(x: Any) -> bool:
    return isinstance(x, AxisMetadata)


def unbox(tree: Any) -> Any:
    """Replaces every metadata box in ``tree`` by its value (boxes in boxes too)."""
    return jax.tree_util.tree_map(
        lambda x: unbox(x.unbox()) if _is_box(x) else x, tree, is_leaf=_is_box
    )


def _leaf_spec(x: Any) -> PartitionSpec | None:
    if hasattr(x, "get_partition_spec"):
        return x.get_partition_spec()
    if hasattr(x, "shape"):
        return PartitionSpec()  # an unboxed array is replicated
    return None


def get_partition_spec(tree: Any) -> Any:
    """The tree of ``PartitionSpec``s: from boxes, or replicated for plain arrays."""
    return jax.tree_util.tree_map(_leaf_spec, tree, is_leaf=_is_box)


def get_sharding(tree: Any, mesh: Mesh) -> Any:
    """The tree of ``NamedSharding``s on ``mesh`` (replicated for plain arrays)."""

    def sharding(x: Any) -> NamedSharding | None:
        if hasattr(x, "get_sharding"):
            return x.get_sharding(mesh)
        spec = _leaf_spec(x)
        return None if spec is None else NamedSharding(mesh, spec)

    return jax.tree_util.tree_map(sharding, tree, is_leaf=_is_box)


# --- logical axis names ------------------------------------------------------


class _Rules(threading.local):
    def __init__(self):
        self.rules: tuple = ()


_rules = _Rules()


def set_logical_axis_rules(rules: LogicalRules) -> None:
    """Sets the logical-to-mesh axis rules for this thread."""
    _rules.rules = tuple(rules)


def get_logical_axis_rules() -> tuple:
    """The logical-to-mesh axis rules in effect."""
    return _rules.rules


@contextlib.contextmanager
def logical_axis_rules(rules: LogicalRules) -> Iterator[None]:
    """Maps logical axis names to mesh axes inside the ``with`` block."""
    old = _rules.rules
    _rules.rules = tuple(rules)
    try:
        yield
    finally:
        _rules.rules = old


class _Unassigned:
    def __repr__(self) -> str:
        return "unassigned"


_UNASSIGNED = _Unassigned()


def _mesh_axes(names: Sequence[Any], rules: LogicalRules | None) -> list[Any]:
    rules = get_logical_axis_rules() if rules is None else rules
    if not isinstance(rules, (tuple, list)):
        raise errors.TransformError(
            f"Logical axis rules must be a sequence of (logical, mesh axes) pairs, got "
            f"{type(rules).__name__}."
        )
    names = list(names)
    repeated = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    if repeated:
        raise errors.TransformError(
            f"Logical axis names {repeated} appear more than once in {tuple(names)}; each "
            "dimension of one array needs its own logical name."
        )
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
    return result


def logical_to_mesh_axes(
    names: Sequence[Any] | None, rules: LogicalRules | None = None
) -> PartitionSpec | None:
    """The mesh ``PartitionSpec`` for logical axis ``names`` (unmatched names: None)."""
    if names is None:
        return None
    axes = _mesh_axes(names, rules)
    return PartitionSpec(*(None if a is _UNASSIGNED else a for a in axes))


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


def _constrain(x: Any, spec: PartitionSpec, mesh: Mesh | None) -> Any:
    if mesh is None and not _mesh_defined():
        return x  # no mesh to shard over: nothing to constrain
    target = spec if mesh is None else NamedSharding(mesh, spec)
    return jax.lax.with_sharding_constraint(x, target)


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
            return leaf
        axes = _mesh_axes(names, rules)
        if any(a is _UNASSIGNED for a in axes):
            if fallback is RulesFallback.RAISE_ERROR:
                raise errors.TransformError(f"Logical axis names {tuple(names)} match no rule.")
            if fallback is RulesFallback.NO_CONSTRAINT:
                return leaf
        return _constrain(
            leaf, PartitionSpec(*(None if a is _UNASSIGNED else a for a in axes)), mesh
        )

    def is_names(n: Any) -> bool:
        if n is None or isinstance(n, PartitionSpec):
            return True
        return isinstance(n, tuple) and all(isinstance(a, str) or a is None for a in n)

    return jax.tree_util.tree_map(one, logical_axis_resources, x, is_leaf=is_names)


class LogicallyPartitioned(Partitioned):
    """A ``Partitioned`` whose names are logical, mapped to mesh axes by rules."""

    rules: Any = struct.field(default=None, pytree_node=False)

    def unbox(self, apply_constraint: bool = True) -> Any:
        """The value, constrained to its mapped sharding when a mesh is known."""
        if apply_constraint and (self.mesh is not None or _mesh_defined()):
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

    @functools.wraps(fn)
    def init(*args: Any, **kwargs: Any) -> LogicallyPartitioned:
        return LogicallyPartitioned(
            fn(*args, **kwargs), tuple(names), mesh, None if rules is None else tuple(rules)
        )

    return init
