# Source of notebooks/04_train_state.ipynb (built by notebooks/build_notebooks.py).
# Topic of seed 001: TrainState (its fields, create, apply_gradients), and reading
# hyperparameters back from the optimizer state with optax.inject_hyperparams.

# %% [markdown]
# # TrainState
#
# A training loop juggles several things: the step count, the model's apply
# function, the parameters, the optimizer and the optimizer's state.
# `minilinen.training.train_state.TrainState` keeps them in one immutable
# object, with two methods:
#
# - `TrainState.create(apply_fn=..., params=..., tx=...)` starts at step 0 and
#   initializes the optimizer state with `tx.init(params)`;
# - `state.apply_gradients(grads=...)` runs one optimizer step and returns a
#   new state with `step + 1`, new `params` and new `opt_state`.
#
# We also look at how to read the learning rate back out of the optimizer
# state, which is handy for logging schedules.

# %% [markdown]
# ## Setup
#
# As in the other notebooks, `jax_threefry_partitionable` is off, the setting
# the original tutorials ran with (it changes which numbers a PRNG key gives).

# %%
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import random

jax.config.update("jax_threefry_partitionable", False)

import minilinen as nn
from minilinen.training import checkpoints, train_state

# %% [markdown]
# A small regression problem to train on: $y = \sin(3x)$ plus noise.

# %%
key_x, key_noise = random.split(random.PRNGKey(0))
x = random.uniform(key_x, (256, 1), minval=-1.0, maxval=1.0)
y = jnp.sin(3 * x) + 0.05 * random.normal(key_noise, (256, 1))


class MLP(nn.Module):
    hidden: int = 32

    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(self.hidden)(x))
        return nn.Dense(1)(x)


model = MLP()
params = model.init(random.PRNGKey(1), x)["params"]

# %% [markdown]
# ## What is in a TrainState
#
# `TrainState` is a `struct.PyTreeNode`: a frozen dataclass that JAX treats as
# a pytree. Its fields are
#
# | field | pytree child? | what |
# | --- | --- | --- |
# | `step` | yes | number of updates so far |
# | `apply_fn` | no (static) | usually `model.apply` |
# | `params` | yes | the parameters |
# | `tx` | no (static) | the Optax `GradientTransformation` |
# | `opt_state` | yes | the optimizer's state |
#
# Fields declared with `struct.field(pytree_node=False)` are *static*: they are
# not leaves, so `jax.jit` treats them as part of the function's identity
# rather than as traced arrays. Functions cannot be traced, so `apply_fn` and
# `tx` must be static; arrays should be children.

# %% tags=["create"]
tx = optax.adam(learning_rate=1e-2)
state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

print("step:", state.step)
print("opt_state:", jax.tree_util.tree_map(jnp.shape, state.opt_state))
n_params = len(jax.tree_util.tree_leaves(params))
n_opt = len(jax.tree_util.tree_leaves(state.opt_state))
print(f"leaves: {len(jax.tree_util.tree_leaves(state))} = 1 (step) + {n_params} (params) "
      f"+ {n_opt} (opt_state); apply_fn and tx are not among them")

# %% [markdown]
# Adam's state is a chain of two: `ScaleByAdamState` (a step count and the
# two moment estimates, shaped like the parameters) and the (empty) state of
# the final scaling by the learning rate.
#
# ## `apply_gradients` is `tx.update` plus `apply_updates`
#
# One step by hand and one with `apply_gradients` give the same result:

# %% tags=["apply-gradients"]
def loss_fn(params, x, y):
    pred = state.apply_fn({"params": params}, x)
    return jnp.mean((pred - y) ** 2)


grads = jax.grad(loss_fn)(state.params, x, y)

updates, new_opt_state = state.tx.update(grads, state.opt_state, state.params)
new_params = optax.apply_updates(state.params, updates)

new_state = state.apply_gradients(grads=grads)
same = jax.tree_util.tree_map(jnp.array_equal, new_state.params, new_params)
print("same params:", all(jax.tree_util.tree_leaves(same)))
print("step:", state.step, "->", new_state.step)

# %% [markdown]
# `state` itself is unchanged: every update returns a new object
# (`state.replace(...)` is the general way to change fields).
#
# ## A training loop
#
# Since the state is a pytree, a whole training step, state in and state out,
# can be jitted:

# %% tags=["train-loop"]
@jax.jit
def train_step(state, x, y):
    def loss_fn(params):
        pred = state.apply_fn({"params": params}, x)
        return jnp.mean((pred - y) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


for i in range(301):
    state, loss = train_step(state, x, y)
    if i % 50 == 0:
        print(f"step {i:3d}: loss {float(loss):.5f}")

# %% [markdown]
# ## Extra fields: BatchNorm statistics
#
# A model with state besides its parameters needs somewhere to keep it.
# Subclass `TrainState` and add a field; pass its new value to
# `apply_gradients`, which forwards extra keyword arguments to `replace`.

# %% tags=["batch-stats"]
class BNMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(32)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.tanh(x)
        return nn.Dense(1)(x)


class TrainStateWithStats(train_state.TrainState):
    batch_stats: Any


bn_model = BNMLP()
variables = bn_model.init(random.PRNGKey(1), x, train=False)
bn_state = TrainStateWithStats.create(
    apply_fn=bn_model.apply,
    params=variables["params"],
    tx=optax.adam(1e-2),
    batch_stats=variables["batch_stats"],
)


@jax.jit
def bn_train_step(state, x, y):
    def loss_fn(params):
        pred, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.mean((pred - y) ** 2), updates

    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
    return state, loss


for i in range(201):
    bn_state, loss = bn_train_step(bn_state, x, y)
    if i % 50 == 0:
        print(f"step {i:3d}: loss {float(loss):.5f}")

mean = bn_state.batch_stats["BatchNorm_0"]["mean"]
print("running mean of the first 3 BatchNorm features:", np.round(np.asarray(mean[:3]), 4))

# %% [markdown]
# ## Reading the learning rate back: `optax.inject_hyperparams`
#
# With a schedule, the learning rate changes every step, and you may want to
# log it. Normally it is hidden inside a closure of the optimizer. Wrapping
# the optimizer's constructor in `optax.inject_hyperparams` moves its
# hyperparameters into the optimizer *state*, under `hyperparams`, where they
# can be read (and, for constant ones, changed):

# %% tags=["inject-hyperparams"]
schedule = optax.linear_schedule(init_value=1e-2, end_value=1e-3, transition_steps=100)
tx = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

print(type(state.opt_state).__name__, "with hyperparams", list(state.opt_state.hyperparams))
for i in range(1, 101):
    state, loss = train_step(state, x, y)
    if i in (1, 50, 100):
        lr = state.opt_state.hyperparams["learning_rate"]
        print(f"after step {i:3d}: learning rate {float(lr):.6f}, schedule({i - 1}) = "
              f"{float(schedule(i - 1)):.6f}")

# %% [markdown]
# The stored value is the one the last update used: the schedule evaluated at
# the step count *before* that update (so after step 1 it holds
# `schedule(0)`).
#
# When the optimizer is a chain, its state is a tuple with one entry per
# link; index into it to find the injected one:

# %% tags=["inject-chain"]
tx = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.inject_hyperparams(optax.adam)(learning_rate=schedule),
)
state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
for _ in range(50):
    state, loss = train_step(state, x, y)
print("learning rate:", float(state.opt_state[1].hyperparams["learning_rate"]))

# %% [markdown]
# A constant hyperparameter can also be changed between steps, for example to
# lower the learning rate by hand. (With a schedule this would be overwritten
# at the next step.)

# %% tags=["set-hyperparam"]
tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
grads = jax.grad(loss_fn)(state.params, x, y)


def step_size(state):
    new = state.apply_gradients(grads=grads)
    return float(jnp.abs(new.params["Dense_1"]["bias"] - state.params["Dense_1"]["bias"])[0])


print(f"lr 0.1:  bias moves by {step_size(state):.6f}")
state.opt_state.hyperparams["learning_rate"] = jnp.asarray(0.01)
print(f"lr 0.01: bias moves by {step_size(state):.6f}")

# %% [markdown]
# ## Saving and restoring a TrainState
#
# A TrainState is a pytree of arrays plus static fields, so it checkpoints as
# it is. `save_checkpoint` writes the file atomically (a crash never leaves a
# half-written checkpoint), and `restore_checkpoint` needs a template of the
# same structure, here a freshly created state.

# %% tags=["checkpoint"]
tx = optax.adam(1e-2)
state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
for _ in range(10):
    state, loss = train_step(state, x, y)

with tempfile.TemporaryDirectory() as ckpt_dir:
    path = checkpoints.save_checkpoint(ckpt_dir, state, step=int(state.step))
    print("saved", path.replace(ckpt_dir, "<ckpt_dir>"))
    fresh = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    restored = checkpoints.restore_checkpoint(ckpt_dir, target=fresh)

print("restored step:", int(restored.step))
same = jax.tree_util.tree_map(np.array_equal, restored.params, state.params)
print("same params:", all(jax.tree_util.tree_leaves(same)))
print("same loss:", float(loss_fn(restored.params, x, y)) == float(loss_fn(state.params, x, y)))
