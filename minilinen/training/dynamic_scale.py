"""``DynamicScale``: loss scaling for low-precision training (Flax's ``dynamic_scale``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from minilinen import struct

__all__ = ["DynamicScale", "DynamicScaleResult"]

_F32 = jnp.finfo(jnp.float32)


class DynamicScaleResult(NamedTuple):
    dynamic_scale: DynamicScale
    finite: jax.Array
    aux: Any
    grad: Any


class DynamicScale(struct.PyTreeNode):
    """Scales the loss up before ``grad``; grows the scale after ``growth_interval``
    finite steps and backs off (not below ``minimum_scale``) when a gradient overflows."""

    growth_factor: float = struct.field(pytree_node=False, default=2.0)
    backoff_factor: float = struct.field(pytree_node=False, default=0.5)
    growth_interval: int = struct.field(pytree_node=False, default=2000)
    fin_steps: int = 0
    scale: float = 65536.0
    minimum_scale: float | None = struct.field(pytree_node=False, default=_F32.tiny)

    def value_and_grad(
        self, fun: Callable, argnums: int | Sequence[int] = 0, has_aux=False, axis_name=None
    ) -> Callable[..., DynamicScaleResult]:
        """Like ``jax.value_and_grad(fun)``, returning a :class:`DynamicScaleResult`
        (gradients in float32, averaged over ``axis_name`` if given)."""

        @functools.wraps(fun)
        def scaled(*args: Any) -> Any:
            out = fun(*args)
            return (self.scale * out[0], out[1]) if has_aux else self.scale * out

        grad_fn = jax.value_and_grad(scaled, argnums, has_aux)

        def run(*args: Any) -> DynamicScaleResult:
            aux, grad = grad_fn(*args)
            aux = (aux[0] / self.scale, aux[1]) if has_aux else aux / self.scale
            grad = jax.tree.map(lambda g: jnp.asarray(g, jnp.float32) / self.scale, grad)
            if axis_name is not None:
                grad = jax.lax.pmean(grad, axis_name)
            finite = jnp.all(jnp.array([jnp.isfinite(g).all() for g in jax.tree.leaves(grad)]))
            grow = self.fin_steps == self.growth_interval
            grown = jnp.minimum(self.scale * self.growth_factor, _F32.max)
            # Not below minimum_scale (no floor when it is None).
            backoff = jnp.clip(self.scale * self.backoff_factor, self.minimum_scale)
            scale = jnp.where(finite, jnp.where(grow, grown, self.scale), backoff)
            fin_steps = jnp.where(grow | ~finite, 0, self.fin_steps + 1)
            new = self.replace(fin_steps=fin_steps, scale=scale)
            return DynamicScaleResult(new, finite, aux, grad)

        return run
