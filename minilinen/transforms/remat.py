"""``nn.remat`` (``nn.checkpoint``) and ``nn.remat_scan``: recompute instead of store.

``remat`` lifts ``jax.checkpoint``: the module's activations are recomputed in
the backward pass. ``remat_scan`` nests scans (one per entry of ``lengths``),
rematerializing every level but the innermost, so a deep stack of identical
blocks compiles once and keeps memory sublinear in depth.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from minilinen import errors
from minilinen.core.frozen_dict import FrozenDict
from minilinen.core.scope import CollectionFilter, Scope
from minilinen.transforms.lift import Pack, as_tuple
from minilinen.transforms.module_lift import module_transform, self_counted
from minilinen.transforms.scan import scan_scope

__all__ = ["remat", "checkpoint", "remat_scan", "remat_scope", "remat_scan_scope"]


def remat_scope(
    fn: Callable,
    variables: CollectionFilter = True,
    rngs: CollectionFilter = True,
    concrete: bool = False,
    prevent_cse: bool = True,
    static_argnums: int | Sequence[int] = (),
    policy: Callable | None = None,
) -> Callable:
    """A lifted ``jax.checkpoint``: recompute the module's activations in the backward pass
    (at the scope level, ``fn(scope, *args, **kwargs)``).

    Args:
      static_argnums: positions of Python-valued arguments, counting ``self`` as 0
        (at the scope level, counting from the first argument after the scope).
      policy: a ``jax.checkpoint_policies`` entry saying which values to keep.
    """
    if concrete:
        raise errors.TransformError(
            "nn.remat(concrete=True) is not supported (JAX removed it); mark the "
            "Python-valued arguments with static_argnums instead."
        )
    # The checkpointed function takes (variable groups, rng groups, *args).
    static = tuple(i + 2 for i in as_tuple(static_argnums))
    checkpoint_options = dict(static_argnums=static, prevent_cse=prevent_cse, policy=policy)

    def lifted(scope: Scope, *args: Any, **kwargs: Any) -> Any:
        pack = Pack(scope, (variables,), (variables,), (rngs,))
        rematted = jax.checkpoint(functools.partial(pack.run, fn), **checkpoint_options)
        y, out_groups = rematted(pack.variable_groups, pack.rng_groups, *args, **kwargs)
        pack.publish(out_groups)
        return y

    return lifted


def remat_scan_scope(
    body_fn: Callable,
    lengths: Sequence[int],
    policy: Callable | None = None,
    variable_broadcast: CollectionFilter = False,
    variable_carry: CollectionFilter = False,
    variable_axes: Mapping[CollectionFilter, int] = FrozenDict({True: 0}),
    split_rngs: Mapping[CollectionFilter, bool] = FrozenDict({True: True}),
) -> Callable:
    """Repeats a module ``(self, x) -> x`` (at the scope level, ``body_fn(scope, carry)``)
    ``prod(lengths)`` times with nested, rematerialized scans; parameters are stacked
    with one axis per level."""
    lengths = tuple(lengths)
    if not lengths:
        raise errors.TransformError("nn.remat_scan needs lengths=(n, ...) with at least one n.")
    scan_options = dict(
        variable_broadcast=variable_broadcast,
        variable_carry=variable_carry,
        variable_axes=variable_axes,
        split_rngs=split_rngs,
    )
    if len(lengths) == 1:
        inner = body_fn
    else:
        inner = remat_scope(
            remat_scan_scope(body_fn, lengths[1:], policy, **scan_options),
            policy=policy,
            prevent_cse=False,  # inside a scan, CSE cannot undo the rematerialization
        )

    def step(scope: Scope, carry: Any) -> tuple[Any, tuple]:
        return inner(scope, carry), ()

    loop = scan_scope(step, length=lengths[0], **scan_options)
    return lambda scope, carry: loop(scope, carry)[0]


checkpoint = module_transform(remat_scope, "Checkpoint", convert=self_counted("static_argnums"))
remat = checkpoint
remat_scan = module_transform(remat_scan_scope, "Remat_scan")
