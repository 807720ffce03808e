"""Lifted autodiff: ``nn.vjp``, ``nn.jvp``, ``nn.grad``, ``nn.value_and_grad`` and
``nn.custom_vjp`` over a module's variables and a function's inputs.

The differentiated collections enter the JAX transform as an argument (so they
get a cotangent or carry a tangent); the rest are closed over. Collections
written inside come back as auxiliary output and are stored in the module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minilinen import errors
from minilinen.core.frozen_dict import unfreeze
from minilinen.core.scope import CollectionFilter
from minilinen.module import Module
from minilinen.transforms.module_lift import lift_fns

__all__ = ["vjp", "jvp", "grad", "value_and_grad", "custom_vjp"]


def vjp(
    fn: Callable,
    mdl: Module,
    *primals: Any,
    has_aux: bool = False,
    reduce_axes: Sequence = (),
    vjp_variables: CollectionFilter = "params",
    variables: CollectionFilter = True,
    rngs: CollectionFilter = True,
    multi_scope: bool = False,
) -> tuple:
    """A lifted ``jax.vjp``: ``(y, bwd)`` (``(y, bwd, aux)`` with ``has_aux``), where
    ``bwd(y_t)`` gives ``(vjp_variables cotangents, *primal cotangents)``."""
    if reduce_axes:
        raise errors.TransformNotSupportedError("reduce_axes is gone from JAX; sum inside fn.")
    filters = (vjp_variables, variables), (variables,), (rngs,)
    pack, (body,) = lift_fns((fn,), mdl, "vjp", primals, *filters)
    diff, other = pack.variable_groups

    def pure(diff: dict, *args: Any) -> tuple:
        y, out = pack.run(body, (diff, other), pack.rng_groups, *args)
        y, aux = y if has_aux else (y, ())
        return y, (aux, out)

    y, bwd, (aux, out) = jax.vjp(pure, diff, *body.args, has_aux=True)
    pack.publish(out)
    return (y, bwd, aux) if has_aux else (y, bwd)


def value_and_grad(
    fn: Callable, mdl: Module, *primals, has_aux=False, reduce_axes=(), variables=True, rngs=True
) -> tuple:
    """``(value, grads)`` (``((value, aux), grads)`` with ``has_aux``) of a scalar ``fn``;
    ``grads`` holds one gradient per primal, none for the module's variables."""
    options = dict(has_aux=has_aux, reduce_axes=reduce_axes, variables=variables, rngs=rngs)
    y, bwd, *aux = vjp(fn, mdl, *primals, vjp_variables=False, **options)
    grads = bwd(jnp.ones_like(y))[1:]
    if jnp.shape(y) != ():
        raise errors.TransformError(
            f"nn.grad needs a scalar-valued fn, got shape {jnp.shape(y)}; reduce it or use nn.vjp."
        )
    return ((y, aux[0]), grads) if has_aux else (y, grads)


def grad(
    fn: Callable, mdl: Module, *primals, has_aux=False, reduce_axes=(), variables=True, rngs=True
) -> Any:
    """The gradients of a scalar ``fn`` for each primal (``(grads, aux)`` with ``has_aux``)."""
    options = dict(has_aux=has_aux, reduce_axes=reduce_axes, variables=variables, rngs=rngs)
    out, grads = value_and_grad(fn, mdl, *primals, **options)
    return (grads, out[1]) if has_aux else grads


def jvp(
    fn: Callable, mdl: Module, primals, tangents, variable_tangents, variables=True, rngs=True
) -> tuple[Any, Any]:
    """A lifted ``jax.jvp``: ``(y, y_t)``; ``variable_tangents`` maps collections to
    tangents of the module's variables (a missing collection has zero tangent)."""
    # JAX compares tree structures, so empty collections and FrozenDicts must go.
    var_t = {col: t for col, t in unfreeze(variable_tangents).items() if t}
    filters = (tuple(var_t), variables), (variables,), (rngs,)
    pack, (body,) = lift_fns((fn,), mdl, "jvp", tuple(primals), *filters)
    diff, other = pack.variable_groups
    pure = lambda diff, args: pack.run(body, (diff, other), pack.rng_groups, *args)
    (y, out), (y_t, _) = jax.jvp(pure, (diff, body.args), (var_t, tuple(tangents)))
    pack.publish(out)
    return y, y_t


def custom_vjp(
    fn: Callable, forward_fn, backward_fn, grad_vars="params", nondiff_argnums=()
) -> Callable:
    """``fn(mdl, *args)`` with the gradient ``backward_fn`` defines.

    Args:
      forward_fn: ``(mdl, *args) -> (y, residuals)``.
      backward_fn: ``(*nondiff_args, residuals, y_t) -> (grad_vars cotangents, *arg
        cotangents)``; it gets no module.
      nondiff_argnums: positions of arguments without a cotangent, counting ``mdl`` as 0.
    """

    def lifted(mdl: Module, *args: Any) -> Any:
        filters = (grad_vars, True), (grad_vars, True), (True,)
        pack, (body, fwd_body) = lift_fns((fn, forward_fn), mdl, "custom_vjp", args, *filters)
        other = pack.variable_groups[1]

        def pure(diff: dict, *args: Any) -> tuple:
            return pack.run(body, (diff, other), pack.rng_groups, *args)

        def forward(diff: dict, *args: Any) -> tuple:
            (y, res), out = pack.run(fwd_body, (diff, other), pack.rng_groups, *args)
            return (y, out), res

        # JAX passes (*nondiff args, residuals, (y_t, cotangent of the written variables)).
        backward = lambda *a: tuple(backward_fn(*a[:-2], a[-2], a[-1][0]))  # noqa: E731

        differentiable = jax.custom_vjp(pure, nondiff_argnums=tuple(nondiff_argnums))
        differentiable.defvjp(forward, backward)
        y, out = differentiable(pack.variable_groups[0], *body.args)
        pack.publish(out)
        return y

    return lifted
