"""T5X-style partitioning (Flax's ``flax.linen.partitioning``), on top of ``spmd``.

Parameters declared with ``param_with_axes`` keep their logical axis names in a
side collection (``params_axes``, holding :class:`AxisMetadata`), read back as
``PartitionSpec``s by ``get_axis_names``. ``scan_with_axes``/``vmap_with_axes``
add the mapped axis to those names. The metadata-box API (``Partitioned``,
``with_partitioning``, the logical rules) is re-exported from ``core.meta`` and
``spmd``, so older ``minilinen.partitioning.X`` imports keep working.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
from jax.sharding import PartitionSpec

from minilinen import errors, spmd, struct
from minilinen.core.frozen_dict import FrozenDict, freeze, unfreeze
from minilinen.core.scope import CollectionFilter
from minilinen.module_context import context
from minilinen.spmd import *  # noqa: F403  (re-exported: logical axis rules and boxes)
from minilinen.spmd import _with_sharding_constraint  # noqa: F401  (Flax's tests patch it here)
from minilinen.transforms import map_variables, scan, vmap
from minilinen.transforms import remat as _remat
from minilinen.transforms.filters import union
from minilinen.transforms.remat import remat_scope
from minilinen.traverse_util import flatten_dict, unflatten_dict
from minilinen.typing import In, Out
from minilinen.variables import Variable

axis_rules = spmd.logical_axis_rules
set_axis_rules = spmd.set_logical_axis_rules
get_axis_rules = spmd.get_logical_axis_rules
with_sharding_constraint = spmd.with_logical_constraint
LogicalRules = spmd.LogicalRules
core_remat_static = remat_scope  # static_argnums index the arguments after the scope
PRNGSequenceFilter = CollectionFilter

# Flax's markers for a variable_axes value: the axis is lifted on the way in / out only.
ScanIn, ScanOut = In, Out

_UNSHARDED = spmd.RulesFallback.AXIS_IS_UNSHARDED


@struct.dataclass
class AxisMetadata:
    """The logical axis names of one variable, kept in a ``<collection>_axes`` collection."""

    names: Any = struct.field(pytree_node=False)


def _same_axes(old: Any, new: AxisMetadata) -> AxisMetadata:
    # sow() reducer: a variable's axes may be recorded again, but never differently.
    if isinstance(old, AxisMetadata) and old != new:
        raise errors.TransformError(f"Axis names recorded twice differ: {old} and {new}.")
    return new


def _map_names(fn: Callable, names: Any) -> Any:
    return jax.tree_util.tree_map(fn, names, is_leaf=spmd._is_logical_names)


def _current(module: Any) -> Any:
    if module is None and not context.stack:
        raise errors.TransformError(
            "param_with_axes/variable_with_axes run inside a Module method (or pass module=)."
        )
    return context.stack[-1] if module is None else module


def param_with_axes(
    name: str, init_fn: Callable, *init_args: Any, axes: Any = None, module: Any = None, **kw: Any
) -> Any:
    """``self.param`` with logical ``axes``: constrains the value, records the names."""
    module = _current(module)
    value = module.param(name, init_fn, *init_args, **kw)
    if axes is not None:
        value = with_sharding_constraint(value, PartitionSpec(*axes))
        module.sow("params_axes", f"{name}_axes", AxisMetadata(axes), reduce_fn=_same_axes)
    return value


class PartitionedVariable(Variable):
    """A ``Variable`` whose value is constrained to its logical ``axes`` on read and write."""

    __slots__ = ("axes", "fallback")

    def __init__(self, scope, collection: str, name: str, axes=None, fallback=_UNSHARDED):
        super().__init__(scope, collection, name, unbox=False)
        self.axes, self.fallback = axes, fallback

    def _constrain(self, value: Any) -> Any:  # axes None: no constraint
        return with_sharding_constraint(value, self.axes, fallback=self.fallback)

    @property
    def value(self) -> Any:
        return self._constrain(Variable.value.fget(self))

    @value.setter
    def value(self, value: Any) -> None:
        Variable.value.fset(self, self._constrain(value))


def variable_with_axes(
    collection: str,
    name: str,
    init_fn: Callable,
    *init_args: Any,
    axes: Any = None,
    module: Any = None,
    fallback: spmd.RulesFallback = _UNSHARDED,
    **init_kwargs: Any,
) -> PartitionedVariable:
    """``self.variable`` with logical ``axes``, recorded in ``<collection>_axes``."""
    module = _current(module)
    var = PartitionedVariable(None, collection, name, axes, fallback)
    module.variable(collection, name, lambda: var._constrain(init_fn(*init_args, **init_kwargs)))
    var.scope = module.scope
    if axes is not None:
        module.sow(f"{collection}_axes", f"{name}_axes", AxisMetadata(axes), reduce_fn=_same_axes)
    return var


def get_axis_names(axes_metadata: Any) -> Any:
    """The ``PartitionSpec`` of each variable recorded in one ``<collection>_axes`` tree."""

    spec = lambda n: None if n is None else PartitionSpec(*n)  # noqa: E731
    specs = {
        k[:-1] + (re.sub("_axes$", "", k[-1]),): _map_names(spec, v.names)
        for k, v in flatten_dict(unfreeze(axes_metadata)).items()
    }
    return freeze(unflatten_dict(specs))


def _with_axis_in_metadata(target: Any, axis: Any, name: str, col: str) -> Any:
    # The mapped axis exists outside the transform only: strip it on the way in, add it
    # back on the way out (written back only where ``col`` is mutable outside).
    axis = getattr(axis, "axis", axis)

    def edit(insert: bool) -> Callable:
        def names(n: Any) -> Any:
            if n is None:
                return n
            n = list(n)
            if insert:
                n.insert(axis, name)
            elif n.pop(axis) != name:
                raise errors.TransformError(f"Expected axis {name!r} at {axis} in {tuple(n)}.")
            return tuple(n)

        def box(x: Any) -> Any:
            if not isinstance(x, AxisMetadata):
                return x
            return x.replace(names=_map_names(names, x.names))

        is_box = lambda x: isinstance(x, AxisMetadata)  # noqa: E731
        return lambda tree: jax.tree_util.tree_map(box, tree, is_leaf=is_box)

    return map_variables(target, col, edit(False), edit(True), mutable=True)


def scan_with_axes(
    target: Any,
    variable_axes: Mapping[CollectionFilter, Any] = FrozenDict(),
    variable_broadcast: CollectionFilter = False,
    *,
    axis_name: str = "layers",
    axes_collections: tuple[str, ...] = ("params",),
    **scan_kwargs: Any,
) -> Any:
    """``nn.scan`` (same other arguments) that adds ``axis_name`` to the axis names
    recorded for the scanned ``axes_collections``."""
    broadcast = union(variable_broadcast, tuple(f"{c}_axes" for c in axes_collections))
    scanned = scan(target, variable_axes, broadcast, **scan_kwargs)
    for col in axes_collections:
        if col in variable_axes:
            scanned = _with_axis_in_metadata(scanned, variable_axes[col], axis_name, f"{col}_axes")
    return scanned


def vmap_with_axes(
    target: Any,
    variable_axes: Mapping[CollectionFilter, Any],
    split_rngs: Mapping[CollectionFilter, bool] = FrozenDict(),
    *,
    partitioning_axis_names: Mapping[str, str] = FrozenDict(),
    **vmap_kwargs: Any,
) -> Any:
    """``nn.vmap`` (same other arguments) that adds ``partitioning_axis_names[col]`` to
    the axis names recorded for ``col``."""
    axes = {**variable_axes, **{f"{c}_axes": None for c in partitioning_axis_names}}
    vmapped = vmap(target, axes, split_rngs, **vmap_kwargs)
    for col, name in partitioning_axis_names.items():
        if col in axes:
            vmapped = _with_axis_in_metadata(vmapped, axes[col], name, f"{col}_axes")
    return vmapped


def remat(target: Any, *, static_argnums: int | Sequence[int] = (), **remat_kwargs: Any) -> Any:
    """``nn.remat`` (same other arguments) whose ``static_argnums`` count from the first
    argument after ``self``."""
    static = (static_argnums,) if isinstance(static_argnums, int) else static_argnums
    lifted = _remat(target, static_argnums=tuple(i + 1 for i in static), **remat_kwargs)
    if isinstance(lifted, type):  # Flax names the class after its core function: same auto-names
        lifted.__name__ = lifted.__qualname__ = "Core_remat_static" + target.__name__
    return lifted
