"""Lifted control flow: ``nn.cond``, ``nn.switch`` and ``nn.while_loop``.

Every branch (and the loop body) is traced on its own inner scope over the same
variables and RNG keys; the collections it writes are part of its output, so all
branches must create and update variables of one structure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from minilinen.core.frozen_dict import FrozenDict
from minilinen.core.scope import CollectionFilter
from minilinen.module import Module
from minilinen.transforms.module_lift import lift_fns

__all__ = ["cond", "switch", "while_loop"]


def _branching(
    select: Callable, fns: Sequence[Callable], mdl: Any, operands: tuple, variables, rngs, where
) -> Any:
    pack, bodies = lift_fns(fns, mdl, where, operands, (variables,), (variables,), (rngs,))
    branches = [
        functools.partial(pack.run, b, pack.variable_groups, pack.rng_groups) for b in bodies
    ]
    y, out = select(branches, *bodies[0].args)
    pack.publish(out)
    return y


def cond(
    pred, true_fun: Callable, false_fun: Callable, mdl: Module, *operands, variables=True, rngs=True
) -> Any:
    """A lifted ``jax.lax.cond``: ``true_fun(mdl, *operands)`` if ``pred``, else ``false_fun``."""
    select = lambda branches, *ops: jax.lax.cond(pred, *branches, *ops)  # noqa: E731
    return _branching(select, (true_fun, false_fun), mdl, operands, variables, rngs, "cond")


def switch(
    index, branches: Sequence[Callable], mdl: Module, *operands, variables=True, rngs=True
) -> Any:
    """A lifted ``jax.lax.switch``: ``branches[index](mdl, *operands)``."""
    select = functools.partial(jax.lax.switch, index)
    return _branching(select, tuple(branches), mdl, operands, variables, rngs, "switch")


def while_loop(
    cond_fn: Callable,
    body_fn: Callable,
    mdl: Module,
    init: Any,
    carry_variables: CollectionFilter = False,
    broadcast_variables: CollectionFilter = True,
    split_rngs: Mapping[CollectionFilter, bool] = FrozenDict(),
) -> Any:
    """A lifted ``jax.lax.while_loop`` over ``body_fn(mdl, carry) -> carry``.

    Args:
      carry_variables: collections the body may update (their shapes must not change).
      broadcast_variables: collections read (only) inside.
      split_rngs: the RNG streams available inside; ``True`` folds in the iteration
        number, so each iteration draws different keys.
    """
    splits = tuple(split_rngs.values())
    filters = (carry_variables, broadcast_variables), (carry_variables,), tuple(split_rngs)
    pack, (test, body) = lift_fns((cond_fn, body_fn), mdl, "while_loop", (), *filters)
    carried, broadcast = pack.variable_groups

    def loop_rngs(i: Any) -> tuple:
        fold = functools.partial(jax.tree_util.tree_map, lambda key: jax.random.fold_in(key, i))
        return tuple(fold(g) if split else g for g, split in zip(pack.rng_groups, splits))

    def keep_going(c: tuple) -> Any:
        i, carried, carry = c
        # As in Flax, the test draws keys with -i, so they differ from the body's.
        return test(pack.inner_scope((carried, broadcast), loop_rngs(-i), False), carry)

    def step(c: tuple) -> tuple:
        i, carried, carry = c
        carry, (carried,) = pack.run(body, (carried, broadcast), loop_rngs(i), carry)
        return i + 1, carried, carry

    _, carried, carry = jax.lax.while_loop(keep_going, step, (0, carried, init))
    pack.publish((carried,))
    return carry
