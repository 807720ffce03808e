# Source of notebooks/02_params_and_state.ipynb (built by notebooks/build_notebooks.py).
# Topic of seed 003: managing parameters and state from init to update, splitting
# and recombining them, and BatchNorm under jax.vmap with a named axis.

# %% [markdown]
# # Parameters and state
#
# A model's variables come in collections: `params`, which the optimizer
# trains, and state such as BatchNorm's running statistics (`batch_stats`),
# which the forward pass itself updates. This notebook shows how to
#
# - initialize both, and split them apart for training;
# - update the state during a training step and put it back together;
# - keep batch-dependent state correct when the loss is written per example
#   and vectorized with `jax.vmap`.

# %% [markdown]
# ## Setup
#
# As in every notebook here, we turn off JAX's `jax_threefry_partitionable`
# flag: the tutorials we follow were run when it was off by default, and the
# flag changes which random numbers a key produces. With it off, the losses
# below are the ones Flax prints for the same code. (minilinen itself works
# with either setting, matching current Flax under the default.)

# %%
from functools import partial

import jax
import optax
from jax import numpy as jnp
from jax import random

jax.config.update("jax_threefry_partitionable", False)

import minilinen as nn

# %% [markdown]
# Some data: 128 random inputs with five features, and a linear target.

# %%
dummy_input = jnp.ones((32, 5))

X = random.uniform(random.PRNGKey(0), (128, 5), minval=0.0, maxval=1.0)
noise = random.uniform(random.PRNGKey(0), (), minval=0.0, maxval=0.1)
X += noise

W = random.uniform(random.PRNGKey(0), (5, 1), minval=0.0, maxval=1.0)
b = random.uniform(random.PRNGKey(0), (), minval=0.0, maxval=1.0)

Y = jnp.matmul(X, W) + b

num_epochs = 5

# %% [markdown]
# ## A model with parameters and state
#
# This layer owns one parameter (`bias`) and one state variable: an
# exponential moving average of its inputs, kept in the `batch_stats`
# collection.

# %%
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

# %% [markdown]
# `init` returns every collection in one tree:

# %% tags=["bias-adder-init"]
model = BiasAdderWithRunningMean()
variables = model.init(random.PRNGKey(0), dummy_input)
variables

# %% [markdown]
# The optimizer must see only the parameters, so we split them off with
# `pop`, which returns the rest and the popped value:

# %% tags=["bias-adder-split"]
state, params = variables.pop("params")
del variables  # no second copy of the arrays
print("params:", params)
print("state: ", state)

# %% [markdown]
# A training step takes both. The forward pass runs with the state's
# collections marked mutable, so it returns their new values next to the
# output; `has_aux=True` lets that ride along with the loss through
# `jax.value_and_grad`. Gradients update the parameters, the forward pass
# updates the state. (The loss here is a stand-in; use your own.)

# %%
@partial(jax.jit, static_argnums=(0, 1))
def update_step(tx, apply_fn, x, opt_state, params, state):
    def loss(params):
        y, updated_state = apply_fn({"params": params, **state}, x, mutable=list(state.keys()))
        l = ((x - y) ** 2).sum()
        return l, updated_state

    (l, updated_state), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state)
    params = optax.apply_updates(params, updates)
    return opt_state, params, updated_state

# %% [markdown]
# `tx` and `apply_fn` are functions, so they are marked static for `jax.jit`.
# Now the loop:

# %% tags=["bias-adder-train"]
tx = optax.sgd(learning_rate=0.02)
opt_state = tx.init(params)

for epoch_num in range(num_epochs):
    opt_state, params, state = update_step(tx, model.apply, dummy_input, opt_state, params, state)
    print(f"epoch {epoch_num + 1}: bias {params['bias'][0]:.6f}, "
          f"running mean {state['batch_stats']['mean'][0, 0]:.6f}")

# %% [markdown]
# The running mean moves 10% of the way towards the input's mean (1.0) each
# step, while gradient descent moves the bias so that `mean + bias`, the
# output, approaches the input (overshooting at first: the loss sums over 32
# rows, which makes a learning rate of 0.02 a big step).
#
# ## Batch statistics under `jax.vmap`
#
# It is often easiest to write a loss for *one* example and let `jax.vmap`
# vectorize it over the batch. Batch normalization does not fit that mold: its
# statistics are means over the batch, so inside a per-example function there
# is no batch to average over.
#
# JAX solves this with named axes. `jax.vmap(..., axis_name="batch")` gives
# the mapped axis a name, and collectives such as `jax.lax.pmean(x, "batch")`
# average across it. `BatchNorm(axis_name="batch")` uses exactly that to
# compute its statistics over the whole batch. Two small changes are needed:
#
# 1. name the axis in the model, through BatchNorm's `axis_name`;
# 2. use the same name in `jax.vmap`.

# %%
class MLP(nn.Module):
    hidden_size: int
    out_size: int
    batch_axis: str | None = "batch"  # the name jax.vmap gives the batch axis

    @nn.compact
    def __call__(self, x, train=False):
        norm = partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            axis_name=self.batch_axis,
        )

        x = nn.Dense(self.hidden_size)(x)
        x = norm()(x)
        x = nn.relu(x)
        x = nn.Dense(self.hidden_size)(x)
        x = norm()(x)
        x = nn.relu(x)
        y = nn.Dense(self.out_size)(x)

        return y

# %% [markdown]
# In the training step, the per-example loss is mapped over `x` and `y`. The
# updated state comes out of every example identical (the statistics are
# averaged across the batch), so it must not get a batch dimension:
# `out_axes=(0, None)` says "stack the losses, return the state once".
#
# The step takes `train` as a static argument and passes it to the model.

# %%
@partial(jax.jit, static_argnames=("tx", "apply_fn", "train"))
def update_step(tx, apply_fn, x_batch, y_batch, opt_state, params, state, train=False):
    def batch_loss(params):
        def loss_fn(x, y):
            pred, updated_state = apply_fn(
                {"params": params, **state}, x, train=train, mutable=list(state.keys())
            )
            return (pred - y) ** 2, updated_state

        loss, updated_state = jax.vmap(
            loss_fn, out_axes=(0, None), axis_name="batch"  # state: one copy, not per example
        )(x_batch, y_batch)
        return jnp.mean(loss), updated_state

    (loss, updated_state), grads = jax.value_and_grad(batch_loss, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state)
    params = optax.apply_updates(params, updates)
    return opt_state, params, updated_state, loss


def fit(train):
    model = MLP(hidden_size=10, out_size=1)
    # init runs with train=False: BatchNorm only reads its averages, no axis name needed.
    variables = model.init(random.PRNGKey(0), dummy_input)
    state, params = variables.pop("params")
    tx = optax.sgd(learning_rate=0.02)
    opt_state = tx.init(params)
    for epoch_num in range(num_epochs):
        opt_state, params, state, loss = update_step(
            tx, model.apply, X, Y, opt_state, params, state, train=train
        )
        print(f"Loss for epoch {epoch_num + 1}:", loss)
    return model, params, state

# %% [markdown]
# The tutorial this notebook follows trains without passing `train`, so the
# model runs with its default, `train=False`. Its losses:

# %% tags=["mlp-vmap-train"]
model, params, state = fit(train=False)
print("running mean of the first BatchNorm:", state["batch_stats"]["BatchNorm_0"]["mean"][:3])

# %% [markdown]
# Look at the running mean: still zero. With `train=False` BatchNorm is in
# inference mode (`use_running_average=True`): it normalizes with its stored
# averages, computes no batch statistics and never uses the axis name. The
# step runs, but it trains a network whose "normalization" is the identity.
#
# With `train=True`, BatchNorm normalizes each example with the statistics of
# the whole batch, gathered across the `"batch"` axis, and updates its
# running averages:

# %% tags=["mlp-vmap-train-true"]
model, params, state = fit(train=True)
print("running mean of the first BatchNorm:", state["batch_stats"]["BatchNorm_0"]["mean"][:3])

# %% [markdown]
# ### Is the vmapped BatchNorm really a batch norm?
#
# It should compute exactly what an ordinary batched forward pass computes,
# with BatchNorm reducing over the batch dimension directly. We can check: the
# same model without the axis name, applied to the whole batch at once, must
# give the same predictions and the same new statistics.

# %% tags=["mlp-vmap-check"]
variables = {"params": params, **state}
per_example = jax.vmap(
    lambda x: model.apply(variables, x, train=True, mutable=["batch_stats"]),
    out_axes=(0, None),
    axis_name="batch",
)
pred_vmap, stats_vmap = per_example(X)

batched_model = MLP(hidden_size=10, out_size=1, batch_axis=None)
pred_batched, stats_batched = batched_model.apply(
    variables, X, train=True, mutable=["batch_stats"]
)

print("largest difference in predictions:", float(jnp.max(jnp.abs(pred_vmap - pred_batched))))
same_stats = jax.tree_util.tree_map(
    lambda a, b: bool(jnp.allclose(a, b, atol=1e-6)), stats_vmap, stats_batched
)
print("same running statistics:", all(jax.tree_util.tree_leaves(same_stats)))

# %% [markdown]
# At inference time (`train=False`) BatchNorm uses the running averages
# instead, so an example's prediction no longer depends on the rest of its
# batch:

# %% tags=["mlp-inference"]
variables = {"params": params, **state}
alone = model.apply(variables, X[:4])
within_batch = model.apply(variables, X)[:4]
print("same predictions alone and within the batch:", bool(jnp.allclose(alone, within_batch)))
