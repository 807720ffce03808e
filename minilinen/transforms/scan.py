"""``nn.scan``: a lifted ``jax.lax.scan`` over a module (or a function of a scope).

Variables fall in three kinds: scanned collections (``variable_axes``), one slice
per iteration, stacked on the way out; broadcast collections
(``variable_broadcast``), shared by every iteration; carried collections
(``variable_carry``), threaded through the loop. Broadcast variables are made
in a first trace of the body (their values must not depend on the loop), then
the loop itself is traced: two traces, as in Flax, so RNG counters advance the
same way and parameters stay bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import linear_util as lu
from jax.interpreters import partial_eval

from minilinen import errors
from minilinen.core.frozen_dict import FrozenDict
from minilinen.core.scope import CollectionFilter, Scope
from minilinen.transforms import lift
from minilinen.transforms.module_lift import module_transform

__all__ = ["scan", "scan_scope", "broadcast"]


class _Broadcast:
    """Marks an input or output that a scan does not iterate over."""

    def __repr__(self) -> str:
        return "broadcast"


broadcast = _Broadcast()


def _is_broadcast(axis: Any) -> bool:
    return axis is broadcast or axis is None


def _per_axis(fn: Callable, axes: Any, *trees: Any) -> Any:
    """Maps ``fn(axis, *subtrees)`` over the prefix tree ``axes``."""
    return jax.tree_util.tree_map(fn, axes, *trees, is_leaf=_is_broadcast)


def _move(tree: Any, source: int, dest: int) -> Any:
    if source == dest:
        return tree
    return jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, source, dest), tree)


def _slice_avals(tree: Any) -> Any:
    """The abstract value of one iteration's slice of each leaf."""

    def aval(x: Any) -> jax.ShapeDtypeStruct:
        typed = jax.typeof(x)
        return jax.ShapeDtypeStruct(typed.shape[1:], typed.dtype, weak_type=typed.weak_type)

    return jax.tree_util.tree_map(aval, tree)


def _loop_invariant_outputs(fn: Callable, *args: Any) -> Any:
    """Evaluates the outputs of ``fn(*args)``, which must not depend on ``args`` (arrays
    or their shapes): as in Flax, a partial evaluation with every input unknown computes
    the known values and stages the rest (side effects included) out, never run."""
    flat, in_tree = jax.tree_util.tree_flatten(args)
    debug = jax.api_util.debug_info("nn.scan", fn, args, {})
    flat_fn, out_tree = jax.api_util.flatten_fun_nokwargs(
        lu.wrap_init(fn, debug_info=debug), in_tree
    )
    unknown = [partial_eval.PartialVal.unknown(jax.api_util.shaped_abstractify(x)) for x in flat]
    _, outs, _ = partial_eval.trace_to_jaxpr_nounits(flat_fn, unknown)
    if not all(out.is_known() for out in outs):
        raise errors.TransformError(
            "nn.scan: a broadcast variable (variable_broadcast, or an out_axes of "
            "nn.broadcast) depends on the loop's carry or scanned inputs. Broadcast "
            "values must be the same in every iteration; scan that collection with "
            "variable_axes, or carry it with variable_carry."
        )
    return jax.tree_util.tree_unflatten(out_tree(), [out.get_known() for out in outs])


def scan_scope(
    fn: Callable,
    variable_axes: Mapping[CollectionFilter, int] = FrozenDict(),
    variable_broadcast: CollectionFilter = False,
    variable_carry: CollectionFilter = False,
    split_rngs: Mapping[CollectionFilter, bool] = FrozenDict(),
    in_axes: Any = 0,
    out_axes: Any = 0,
    length: int | None = None,
    reverse: bool = False,
    unroll: int = 1,
    data_transform: Callable | None = None,
    metadata_params: Mapping[Any, Any] = FrozenDict(),
    check_constancy_invariants: bool = True,
    _split_transpose: bool = False,
) -> Callable:
    """A lifted ``jax.lax.scan``: ``(module, carry, *xs) -> (carry, ys)`` over iterations
    (at the scope level, ``fn(scope, carry, *xs)``).

    Args:
      variable_axes: collections scanned over (one slice per iteration), with their axis.
      variable_broadcast: collections shared by every iteration (e.g. tied weights).
      variable_carry: collections carried from one iteration to the next.
      split_rngs: streams that get a different key each iteration (True) or not.
      in_axes / out_axes: the scanned axis of each input / output, or ``nn.broadcast``.
    """
    in_filters, var_in, out_filters, var_out = lift.split_in_out(variable_axes)
    for axis in var_in + var_out:
        if not isinstance(axis, int):
            raise errors.TransformError(
                f"nn.scan variable_axes must map collections to integer axes, got {axis!r}; "
                "use variable_broadcast for collections shared by every iteration."
            )
    shared = (variable_broadcast, variable_carry)
    rng_filters = tuple(split_rngs.keys())
    rng_split = tuple(bool(split) for split in split_rngs.values())
    params = dict(metadata_params)
    scan_kwargs = dict(reverse=reverse, unroll=unroll, _split_transpose=_split_transpose)

    def lifted(scope: Scope, init: Any, *args: Any) -> tuple[Any, Any]:
        pack = lift.Pack(scope, shared + in_filters, shared + out_filters, rng_filters)
        bvars, cvars, *svars = pack.variable_groups
        n = lift.mapped_size(in_axes, args, length, "scan", "length")
        svars = tuple(
            _move(lift.remove_axis(g, axis, params), axis, 0) for g, axis in zip(svars, var_in)
        )
        keys = tuple(
            lift.split_keys(g, n) if split else () for g, split in zip(pack.rng_groups, rng_split)
        )
        xs_args = _per_axis(
            lambda axis, x: () if _is_broadcast(axis) else _move(x, axis, 0), in_axes, args
        )

        def body(b_in: dict, carry: tuple, xs: tuple) -> tuple:
            c_in, c = carry
            s_in, keys_i, x_i = xs
            groups = (b_in, c_in, *s_in)
            rng_groups = tuple(
                k if split else g for g, k, split in zip(pack.rng_groups, keys_i, rng_split)
            )
            if data_transform is not None:
                groups, rng_groups = data_transform(groups, rng_groups)
            args_i = _per_axis(
                lambda axis, a, x: a if _is_broadcast(axis) else x, in_axes, args, x_i
            )
            (c, y), (b_out, c_out, *s_out) = pack.run(fn, groups, rng_groups, c, *args_i)
            b_out = pack.each(lambda out, b: {**b, **out}, b_out, b_in)  # read-only ones pass
            return b_out, (c_out, c), (y, tuple(s_out))

        xs = (svars, keys, xs_args)
        y_consts = None
        if check_constancy_invariants:

            def first_pass(carry: tuple, xs_i: tuple) -> tuple:
                b_out, _, (y, _) = body(bvars, carry, xs_i)
                kept = _per_axis(lambda axis, v: v if _is_broadcast(axis) else (), out_axes, y)
                return b_out, kept

            bvars, y_consts = _loop_invariant_outputs(first_pass, (cvars, init), _slice_avals(xs))
        elif any(_is_broadcast(a) for a in jax.tree_util.tree_leaves(out_axes, _is_broadcast)):
            raise errors.TransformError(
                "nn.scan with check_constancy_invariants=False cannot return broadcast "
                f"outputs (out_axes={out_axes!r})."
            )

        def step(carry: tuple, xs_i: tuple) -> tuple:
            _, carry, (y, s_out) = body(bvars, carry, xs_i)
            y = _per_axis(lambda axis, v: () if _is_broadcast(axis) else v, out_axes, y)
            return carry, (y, s_out)

        (c_out, c), (ys, s_out) = jax.lax.scan(step, (cvars, init), xs, length=n, **scan_kwargs)
        ys = _per_axis(
            lambda axis, v, const: const if _is_broadcast(axis) else _move(v, 0, axis),
            out_axes,
            ys,
            ys if y_consts is None else y_consts,  # None: no output is broadcast
        )
        s_out = tuple(
            lift.add_axis(_move(g, 0, axis), axis, params) for g, axis in zip(s_out, var_out)
        )
        pack.publish((bvars, c_out, *s_out))
        return c, ys

    return lifted


scan = module_transform(scan_scope, "Scan", no_kwargs="scan")
