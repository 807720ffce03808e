"""Boxes that carry metadata beside a variable's value (e.g. partitioning).

``with_partitioning(init_fn, names)`` makes a parameter initializer whose
values come boxed in a :class:`Partitioned` holding the mesh axis name of each
array dimension. Modules read the plain value (``Module.param`` unboxes); the
variable trees keep the boxes, so ``get_partition_spec(variables)`` turns them
into ``jax.sharding.PartitionSpec``s and ``get_sharding(variables, mesh)`` into
``NamedSharding``s for ``jax.jit(..., out_shardings=...)``.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from minilinen import errors, struct


class AxisMetadata(abc.ABC):
    """Base class of metadata boxes: modules read ``unbox()``, trees keep the box."""

    __slots__ = ()

    @abc.abstractmethod
    def unbox(self) -> Any:
        """The plain value inside the box."""

    @abc.abstractmethod
    def replace_boxed(self, value: Any) -> AxisMetadata:
        """The same metadata around a new value."""


# The key of ``metadata_params`` naming the axis nn.scan/nn.vmap add to a box.
PARTITION_NAME = "partition_name"


def global_mesh_defined() -> bool:
    """Whether a mesh is set (``jax.set_mesh``) for the current trace."""
    return not jax.sharding.get_abstract_mesh().empty


def _with_sharding_constraint(x: Any, spec: PartitionSpec | None, mesh: Mesh | None = None) -> Any:
    if mesh is None and not global_mesh_defined():
        return x  # no mesh to shard over: nothing to constrain
    target = spec if mesh is None or spec is None else NamedSharding(mesh, spec)
    return jax.lax.with_sharding_constraint(x, target)


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
        if not apply_constraint:
            return self.value
        return _with_sharding_constraint(self.value, self.get_partition_spec(), self.mesh)

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


def boxed_initializer(box: type, fn: Callable, *metadata: Any) -> Callable:
    """The initializer ``fn`` with its value boxed: ``box(value, *metadata)``."""

    @functools.wraps(fn)
    def init(*args: Any, **kwargs: Any) -> Any:
        return box(fn(*args, **kwargs), *metadata)

    return init


def with_partitioning(fn: Callable, names: Sequence[Any], mesh: Mesh | None = None) -> Callable:
    """Wraps an initializer so its value comes boxed with mesh axis ``names``."""
    return boxed_initializer(Partitioned, fn, tuple(names), mesh)


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
