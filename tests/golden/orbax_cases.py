"""The model, train state and trees of the Orbax and tree-path golden data, written once
for both libraries: ``nn`` is ``flax.linen`` in the generator and ``minilinen`` in
the tests, ``train_state`` and ``freeze`` the library's own.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

STEPS_BEFORE_SAVE = 3
STEPS_AFTER_SAVE = 2


def model(nn: Any) -> Any:
    """A small model with nested modules, a list of submodules and BatchNorm."""

    class Block(nn.Module):
        widths: tuple = (6, 5)

        def setup(self):
            self.layers = [nn.Dense(w) for w in self.widths]
            self.norm = nn.BatchNorm(momentum=0.5)

        def __call__(self, x, train: bool):
            for layer in self.layers:
                x = nn.relu(layer(x))
            return self.norm(x, use_running_average=not train)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = True):
            x = Block(name="block")(nn.Dense(8)(x), train)
            return nn.Dense(2)(x)

    return Net()


def data() -> tuple[jax.Array, jax.Array]:
    r = np.random.default_rng(14)
    return jnp.asarray(r.normal(size=(6, 4)), jnp.float32), jnp.asarray(r.normal(size=(6, 2)))


def state_class(train_state: Any) -> type:
    class TrainStateWithStats(train_state.TrainState):
        batch_stats: Any

    return TrainStateWithStats


def make_state(nn: Any, train_state: Any, freeze: Any) -> Any:
    """A fresh TrainState subclass with ``batch_stats``; its mappings are FrozenDicts."""
    net, (x, _) = model(nn), data()
    variables = freeze(net.init(jax.random.PRNGKey(0), x))
    return state_class(train_state).create(
        apply_fn=net.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=optax.adam(1e-2),
    )


def train(state: Any, steps: int) -> tuple[Any, list[float]]:
    """``steps`` jitted steps (BatchNorm in training mode); the state and the losses."""
    x, y = data()

    @jax.jit
    def step(state):
        def loss_fn(params):
            pred, updates = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats}, x, mutable=["batch_stats"]
            )
            return jnp.mean((pred - y) ** 2), updates["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads).replace(batch_stats=stats), loss

    losses = []
    for _ in range(steps):
        state, loss = step(state)
        losses.append(float(loss))
    return state, losses


def path_cases(nn: Any, train_state: Any, freeze: Any) -> dict[str, Any]:
    """Trees whose key paths must be Flax's: name -> tree."""
    state = make_state(nn, train_state, freeze)
    variables = freeze({"params": state.params, "batch_stats": state.batch_stats})
    return {
        "variables": variables,
        "frozen_mixed": freeze({"b": {1: 1.0, 0: 2.0}, "a": [3.0, {"z": 4.0, "y": (5.0,)}]}),
        "train_state": state,
    }


def key_entry(entry: Any) -> list:
    """A key entry as JSON: its class name and what it holds."""
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return [type(entry).__name__, getattr(entry, attr)]
    raise TypeError(f"unexpected key entry {entry!r}")


def describe_paths(tree: Any) -> list:
    """Every leaf's path: its key entries and its ``keystr``."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [[[key_entry(k) for k in path], jax.tree_util.keystr(path)] for path, _ in leaves]
