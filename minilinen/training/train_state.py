"""TrainState: the step counter, parameters and optimizer state of a training run.

A ``struct.PyTreeNode``: ``step``, ``params`` and ``opt_state`` are pytree
children (they pass through ``jax.jit`` and go into checkpoints); ``apply_fn`` and
``tx`` are static (they are code, compared by value when jit caches a trace).
Subclass it to carry more, e.g. ``batch_stats: Any``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax

from minilinen import struct

__all__ = ["TrainState", "OVERWRITE_WITH_GRADIENT"]

# A params collection under this name is not optimized: its new value is the
# gradient itself (how fp8 training carries its scales, as in Flax).
OVERWRITE_WITH_GRADIENT = "_overwrite_with_gradient"


class TrainState(struct.PyTreeNode):
    """The state of a training run, updated by ``apply_gradients``."""

    step: int | jax.Array
    apply_fn: Callable = struct.field(pytree_node=False)
    params: Any = struct.field(pytree_node=True)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    opt_state: optax.OptState = struct.field(pytree_node=True)

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> TrainState:
        """Returns the state after one optimizer step on ``grads`` (``step`` + 1).

        Args:
          grads: gradients shaped like ``params``.
          **kwargs: other fields to replace at the same time (e.g. ``batch_stats``).
        """
        overwrite = isinstance(grads, Mapping) and OVERWRITE_WITH_GRADIENT in grads
        grads_opt, params_opt = grads, self.params
        if overwrite:
            grads_opt, params_opt = grads["params"], self.params["params"]
        updates, new_opt_state = self.tx.update(grads_opt, self.opt_state, params_opt)
        new_params = optax.apply_updates(params_opt, updates)
        if overwrite:
            new_params = {
                "params": new_params,
                OVERWRITE_WITH_GRADIENT: grads[OVERWRITE_WITH_GRADIENT],
            }
        return self.replace(
            step=self.step + 1, params=new_params, opt_state=new_opt_state, **kwargs
        )

    @classmethod
    def create(
        cls, *, apply_fn: Callable, params: Any, tx: optax.GradientTransformation, **kwargs: Any
    ) -> TrainState:
        """A state at ``step=0`` with ``opt_state = tx.init(params)``."""
        overwrite = isinstance(params, Mapping) and OVERWRITE_WITH_GRADIENT in params
        opt_state = tx.init(params["params"] if overwrite else params)
        return cls(step=0, apply_fn=apply_fn, params=params, tx=tx, opt_state=opt_state, **kwargs)
