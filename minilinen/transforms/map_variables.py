"""``nn.map_variables``: a view of a module's variables, transformed on the way in
(and, when writable, on the way out).

``trans_in_fn`` receives the mapped collections as ``{collection: tree}`` and
returns what the module sees; ``trans_out_fn`` maps written values back. With
``init=True`` the module first runs unmapped to create its variables, then
``trans_out_fn`` stores them; with ``mutable=False`` (the default) the mapped
collections are read-only inside.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from minilinen.core.frozen_dict import FrozenDict, unfreeze
from minilinen.core.scope import CollectionFilter, Scope
from minilinen.transforms.filters import is_empty, subtract
from minilinen.transforms.lift import Pack, add_axis, remove_axis
from minilinen.transforms.module_lift import module_transform

__all__ = ["map_variables", "map_variables_scope", "add_metadata_axis"]


def _identity(x: Any) -> Any:
    return x


def map_variables_scope(
    fn: Callable,
    mapped_collections: CollectionFilter = True,
    trans_in_fn: Callable = _identity,
    trans_out_fn: Callable = _identity,
    init: bool = False,
    mutable: bool = False,
    rngs: CollectionFilter = True,
    variables: CollectionFilter = True,
) -> Callable:
    """Shows a Module class or method (at the scope level, ``fn(scope, *args)``) its
    ``mapped_collections`` through ``trans_in_fn``.

    Args:
      trans_in_fn / trans_out_fn: map ``{collection: tree}`` on the way in / out.
      init: create the variables first (unmapped), storing them via ``trans_out_fn``.
      mutable: let the module write the mapped collections (through ``trans_out_fn``).
    """
    writes_target = mutable or init
    in_filters = (mapped_collections, variables)
    # Read-only mapped collections: only the others are written (and writable) inside.
    out_filters = in_filters if writes_target else (False, subtract(variables, mapped_collections))

    def lifted(scope: Scope, *args: Any, **kwargs: Any) -> Any:
        pack = Pack(scope, in_filters, out_filters, (rngs,))
        target, others = pack.variable_groups
        if init and not is_empty(pack.mutable):
            # Create the variables unmapped (RNG counters advance as in Flax),
            # then store them as trans_out_fn says.
            _, (target, _) = pack.run(fn, (target, others), pack.rng_groups, *args, **kwargs)
            target = pack.each(trans_out_fn, target)
        target = pack.each(lambda t: trans_in_fn(unfreeze(t)), target)
        y, (out_target, out_others) = pack.run(
            fn, (target, others), pack.rng_groups, *args, **kwargs
        )
        if writes_target:
            out_target = pack.each(trans_out_fn, out_target)
        pack.publish((out_target, out_others))
        return y

    return lifted


map_variables = module_transform(map_variables_scope, "Map_variables")


def add_metadata_axis(
    target: Any,
    variable_axes: Mapping[CollectionFilter, int | None] = FrozenDict(),
    metadata_params: dict | None = None,
) -> Any:
    """Adds ``variable_axes``' axes to the metadata boxes of those collections outside
    ``target`` and strips them inside, as ``nn.vmap``/``nn.scan`` do at their boundary,
    without mapping any values (``None``: a broadcast collection, boxes unchanged)."""
    params = {} if metadata_params is None else metadata_params
    for collection, axis in variable_axes.items():
        strip = functools.partial(remove_axis, axis=axis, params=params)
        record = functools.partial(add_axis, axis=axis, params=params)
        target = map_variables(target, collection, strip, record, mutable=True)
    return target
