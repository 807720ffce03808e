"""``nn.vmap``: a lifted ``jax.vmap`` over a module (or a function of a scope).

Collections in ``variable_axes`` with an integer axis get one slice per batch
element (stacked on that axis); with ``None`` they are shared. Streams in
``split_rngs`` marked True get a different key per element.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

from minilinen.core.frozen_dict import FrozenDict
from minilinen.core.scope import CollectionFilter, Scope
from minilinen.transforms import lift
from minilinen.transforms.module_lift import module_transform

__all__ = ["vmap", "vmap_scope"]


def vmap_scope(
    fn: Callable,
    variable_axes: Mapping[CollectionFilter, int | None] = FrozenDict(),
    split_rngs: Mapping[CollectionFilter, bool] = FrozenDict(),
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_size: int | None = None,
    axis_name: str | None = None,
    spmd_axis_name: Any = None,
    metadata_params: Mapping[Any, Any] = FrozenDict(),
) -> Callable:
    """A lifted ``jax.vmap`` over a Module class or method (at the scope level,
    ``fn(scope, *args)``).

    Args:
      variable_axes: collections mapped over (an axis) or shared (None).
      split_rngs: streams that get a different key per batch element (True) or not.
      axis_name: names the mapped axis for collectives such as ``jax.lax.pmean``.
    """
    in_filters, var_in, out_filters, var_out = lift.split_in_out(variable_axes)
    rng_filters = tuple(split_rngs.keys())
    rng_split = tuple(bool(split) for split in split_rngs.values())
    rng_axes = tuple(0 if split else None for split in rng_split)
    params = dict(metadata_params)
    if isinstance(in_axes, list):  # jax.vmap reads a list as the tuple of arguments
        in_axes = tuple(in_axes)

    def lifted(scope: Scope, *args: Any) -> Any:
        pack = lift.Pack(scope, in_filters, out_filters, rng_filters)
        groups = tuple(
            lift.remove_axis(g, axis, params) for g, axis in zip(pack.variable_groups, var_in)
        )
        n = lift.mapped_size((var_in, in_axes), (groups, args), axis_size, "vmap", "axis_size")
        rng_groups = tuple(
            lift.split_keys(g, n) if split else g for g, split in zip(pack.rng_groups, rng_split)
        )

        y, out_groups = jax.vmap(
            lambda groups, rng_groups, args: pack.run(fn, groups, rng_groups, *args),
            in_axes=(var_in, rng_axes, in_axes),
            out_axes=(out_axes, var_out),
            axis_name=axis_name,
            axis_size=axis_size,
            spmd_axis_name=spmd_axis_name,
        )(groups, rng_groups, args)
        pack.publish(tuple(lift.add_axis(g, axis, params) for g, axis in zip(out_groups, var_out)))
        return y

    return lifted


vmap = module_transform(vmap_scope, "Vmap", no_kwargs="vmap")
