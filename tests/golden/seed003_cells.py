"""The code cells of seed 003 (parameter and state handling), as functions of ``nn``.

Seed 003 prints losses but its dump keeps no output, so the expected numbers are
the real Flax's (recorded by ``make_golden.py`` into ``seeds/seed003.json``). The cell
code below is the seed's, unchanged except that ``nn`` (and the data) come in as
arguments instead of globals.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import optax
from jax import numpy as jnp
from jax import random


def make_data() -> dict:
    """The seed's first cell: dummy input and the regression data X, Y."""
    dummy_input = jnp.ones((32, 5))

    X = random.uniform(random.PRNGKey(0), (128, 5), minval=0.0, maxval=1.0)
    noise = random.uniform(random.PRNGKey(0), (), minval=0.0, maxval=0.1)
    X += noise

    W = random.uniform(random.PRNGKey(0), (5, 1), minval=0.0, maxval=1.0)
    b = random.uniform(random.PRNGKey(0), (), minval=0.0, maxval=1.0)

    Y = jnp.matmul(X, W) + b

    num_epochs = 5
    return {"dummy_input": dummy_input, "X": X, "Y": Y, "num_epochs": num_epochs}


def bias_adder_training(nn: Any, d: dict) -> dict:
    """BiasAdderWithRunningMean trained for num_epochs steps with optax.sgd."""
    dummy_input, num_epochs = d["dummy_input"], d["num_epochs"]

    class BiasAdderWithRunningMean(nn.Module):
        momentum: float = 0.9

        @nn.compact
        def __call__(self, x):
            is_initialized = self.has_variable("batch_stats", "mean")
            mean = self.variable("batch_stats", "mean", jnp.zeros, x.shape[1:])
            bias = self.param("bias", lambda rng, shape: jnp.zeros(shape), x.shape[1:])
            if is_initialized:
                mean.value = self.momentum * mean.value + (1.0 - self.momentum) * jnp.mean(
                    x, axis=0, keepdims=True
                )
            return mean.value + bias

    @partial(jax.jit, static_argnums=(0,))
    def update_step(apply_fn, x, opt_state, params, state):
        def loss(params):
            y, updated_state = apply_fn({"params": params, **state}, x, mutable=list(state.keys()))
            l = ((x - y) ** 2).sum()  # Replace with your loss here.  # noqa: E741
            return l, updated_state

        (l, updated_state), grads = jax.value_and_grad(loss, has_aux=True)(params)  # noqa: E741
        updates, opt_state = tx.update(grads, opt_state)  # Defined below.
        params = optax.apply_updates(params, updates)
        return opt_state, params, updated_state

    model = BiasAdderWithRunningMean()
    variables = model.init(random.PRNGKey(0), dummy_input)
    state, params = variables.pop("params")
    del variables
    tx = optax.sgd(learning_rate=0.02)
    opt_state = tx.init(params)

    for _epoch_num in range(num_epochs):
        opt_state, params, state = update_step(model.apply, dummy_input, opt_state, params, state)
    return {"params": params, "state": state}


def batchnorm_vmap_training(nn: Any, d: dict) -> dict:
    """The MLP with BatchNorm(axis_name='batch') trained under jax.vmap."""
    X, Y, dummy_input, num_epochs = d["X"], d["Y"], d["dummy_input"], d["num_epochs"]

    class MLP(nn.Module):
        hidden_size: int
        out_size: int

        @nn.compact
        def __call__(self, x, train=False):
            norm = partial(
                nn.BatchNorm,
                use_running_average=not train,
                momentum=0.9,
                epsilon=1e-5,
                axis_name="batch",
            )

            x = nn.Dense(self.hidden_size)(x)
            x = norm()(x)
            x = nn.relu(x)
            x = nn.Dense(self.hidden_size)(x)
            x = norm()(x)
            x = nn.relu(x)
            y = nn.Dense(self.out_size)(x)

            return y

    @partial(jax.jit, static_argnums=(0,))
    def update_step(apply_fn, x_batch, y_batch, opt_state, params, state):
        def batch_loss(params):
            def loss_fn(x, y):
                pred, updated_state = apply_fn(
                    {"params": params, **state}, x, mutable=list(state.keys())
                )
                return (pred - y) ** 2, updated_state

            loss, updated_state = jax.vmap(loss_fn, out_axes=(0, None), axis_name="batch")(
                x_batch, y_batch
            )
            return jnp.mean(loss), updated_state

        (loss, updated_state), grads = jax.value_and_grad(batch_loss, has_aux=True)(params)

        updates, opt_state = tx.update(grads, opt_state)
        params = optax.apply_updates(params, updates)
        return opt_state, params, updated_state, loss

    model = MLP(hidden_size=10, out_size=1)
    variables = model.init(random.PRNGKey(0), dummy_input)
    state, params = variables.pop("params")
    del variables
    tx = optax.sgd(learning_rate=0.02)
    opt_state = tx.init(params)

    losses = []
    for _epoch_num in range(num_epochs):
        opt_state, params, state, loss = update_step(model.apply, X, Y, opt_state, params, state)
        losses.append(loss)
    return {"losses": losses, "params": params, "state": state}
