# Source of notebooks/05_optax_internals.ipynb (built by notebooks/build_notebooks.py).
# Topic of seed 000: how Optax builds optimizers: the Python it relies on (zip,
# NamedTuple, closures), GradientTransformation, chain, adam as a chain, and
# learning-rate schedules through scale_by_learning_rate / scale_by_schedule.

# %% [markdown]
# # Inside Optax: how `chain` builds an optimizer
#
# `optax.adam(lr)` looks like a single object, but it is a *chain* of small
# gradient transformations, each a pair of pure functions. This notebook takes
# that apart: first the three bits of Python Optax leans on, then
# `GradientTransformation` and `chain`, which we rebuild ourselves and check
# against Optax on a minilinen model, and finally how a learning-rate schedule
# gets into the chain.

# %% [markdown]
# ## Setup
#
# `jax_threefry_partitionable` is off, as in the original tutorials (it changes
# which numbers a PRNG key produces; nothing else here depends on it).

# %%
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

jax.config.update("jax_threefry_partitionable", False)

import minilinen as nn

# %% [markdown]
# ## Three Python idioms
#
# ### Unzipping with `zip(*...)`
#
# `chain` receives a list of (init, update) pairs and needs the inits and the
# updates as two separate sequences. `zip(*pairs)` transposes the list:

# %% tags=["zip"]
ts1 = ("i1", "u1")
ts2 = ("i2", "u2")
ts3 = ("i3", "u3")
ts4 = ("i4", "u4")
ts5 = ("i5", "u5")

ts_list = [ts1, ts2, ts3, ts4, ts5]

i_list, u_list = zip(*ts_list)

print(i_list)
print(u_list)

# %% [markdown]
# ### `NamedTuple`
#
# Optax's transformations and their states are named tuples: tuples (so JAX
# sees pytrees, and unpacking works) whose entries also have names.

# %% tags=["namedtuple"]
class Pair(NamedTuple):
    a: int
    b: int


Pair(1, 2)

# %% tags=["namedtuple-access"]
p = Pair(1, 2)
first, second = p  # unpacks like a tuple
print(p.a == first, p[1] == second, p._fields)

# %% [markdown]
# ### Closures
#
# A function defined inside another keeps access to the outer function's
# variables after the outer one has returned. A small memoizing decorator
# shows the idea: `cache` lives on inside `wrapper`.

# %% tags=["closure"]
def in_cache(func):
    cache = {}

    def wrapper(n):
        print(cache)
        if n in cache:
            return cache[n]
        cache[n] = func(n)
        return cache[n]

    return wrapper


def factorial(n):
    ret = 1
    for i in range(1, n + 1):
        ret *= i
    return ret


factorial = in_cache(factorial)

# %% tags=["closure-calls"]
factorial(3)
factorial(5)
factorial(10)

# %% [markdown]
# Closures and `jax.jit` get along as long as what the closure captures does
# not change: `jit` traces the function once and bakes captured values into
# the compiled code. A mutable dict updated between calls (like `cache`) would
# be silently frozen at its traced value. Optax's closures capture only
# hyperparameters and other functions, which never change, so its `init` and
# `update` functions are safe to jit.
#
# ## `GradientTransformation`
#
# Every Optax transformation is built on the same pattern: a constructor takes
# the hyperparameters and returns a `GradientTransformation(init, update)`, a
# named tuple of two closures over those hyperparameters.
#
# - `init(params) -> state`
# - `update(updates, state, params=None) -> (updates, new_state)`
#
# Let us write two of them ourselves: Adam's rescaling, and multiplication by
# a constant.

# %%
class MyAdamState(NamedTuple):
    count: jax.Array
    mu: Any  # first moment, shaped like the params
    nu: Any  # second moment


def my_scale_by_adam(b1=0.9, b2=0.999, eps=1e-8):
    def init_fn(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return MyAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

    def update_fn(updates, state, params=None):
        del params  # Adam's scaling does not look at the parameters
        mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g**2, state.nu, updates)
        count = state.count + 1
        # Bias correction: early averages are pulled towards their zero start.
        mu_hat = jax.tree_util.tree_map(lambda m: m / (1 - b1**count), mu)
        nu_hat = jax.tree_util.tree_map(lambda v: v / (1 - b2**count), nu)
        updates = jax.tree_util.tree_map(lambda m, v: m / (jnp.sqrt(v) + eps), mu_hat, nu_hat)
        return updates, MyAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def my_scale(step_size):
    def init_fn(params):
        del params
        return optax.EmptyState()  # nothing to remember

    def update_fn(updates, state, params=None):
        del params
        return jax.tree_util.tree_map(lambda g: step_size * g, updates), state

    return optax.GradientTransformation(init_fn, update_fn)

# %% [markdown]
# ## `chain`
#
# `chain` combines transformations into one. Its `init` collects every
# link's state in a tuple; its `update` threads the updates through the links
# in order, each link getting its own state back. The updates play the role
# of a carry (as in `jax.lax.scan`), the states are per link.

# %%
def my_chain(*transforms):
    init_fns, update_fns = zip(*transforms)  # the unzip from above

    def init_fn(params):
        return tuple(fn(params) for fn in init_fns)

    def update_fn(updates, state, params=None):
        new_state = []
        for fn, s in zip(update_fns, state):
            updates, s = fn(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return optax.GradientTransformation(init_fn, update_fn)


def my_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8):
    # Every Optax optimizer ends with a scaling by minus the learning rate:
    # transformations produce the step to *add* to the parameters.
    return my_chain(my_scale_by_adam(b1, b2, eps), my_scale(-learning_rate))

# %% [markdown]
# ## Watching Adam on a tiny problem
#
# Fit `y = w * x + c` to a single point, `x = 3, y = 9`, from `w = 1, c = 3`,
# with Optax's Adam and a learning rate of 0.0003:

# %% tags=["adam-steps"]
learning_rate = 0.0003
tx = optax.adam(learning_rate)

params = jnp.array([1.0, 3.0])
x = jnp.array([3.0])
y = jnp.array([9.0])


def loss_fn(params, x, y):
    pred = params[0] * x + params[1]
    loss = optax.losses.l2_loss(pred, y)
    return loss.mean()


opt_state = tx.init(params)

for i in range(3):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    print(f"params  | {params}")
    print(f"updates | {updates}")
    params = optax.apply_updates(params, updates)

# %% [markdown]
# Each step moves both parameters by almost exactly the learning rate: Adam
# divides the gradient by its own magnitude, so early steps have size `lr`
# whatever the gradient's scale.
#
# The same fit as a minilinen model: a `Dense(1)` layer computes
# `x @ kernel + bias`, so with `kernel = [[1.]]` and `bias = [3.]` it is the
# same line. Optax works on the parameter tree directly, and the numbers are
# the same:

# %% tags=["adam-steps-minilinen"]
model = nn.Dense(1)
variables = {"params": {"kernel": jnp.array([[1.0]]), "bias": jnp.array([3.0])}}


def model_loss(variables, x, y):
    pred = model.apply(variables, x[:, None])[:, 0]
    return optax.losses.l2_loss(pred, y).mean()


opt_state = tx.init(variables)
for i in range(3):
    loss, grads = jax.value_and_grad(model_loss)(variables, x, y)
    updates, opt_state = tx.update(grads, opt_state, variables)
    p = variables["params"]
    u = updates["params"]
    print(f"params  | kernel {p['kernel'][0, 0]:.7f}  bias {p['bias'][0]:.7f}")
    print(f"updates | kernel {u['kernel'][0, 0]:.8f}  bias {u['bias'][0]:.8f}")
    variables = optax.apply_updates(variables, updates)

# %% [markdown]
# Now our own `my_adam` against `optax.adam`, on a small minilinen MLP and a
# few jitted steps:

# %% tags=["my-adam"]
class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(1)(x)


mlp = MLP()
xs = jax.random.normal(jax.random.PRNGKey(0), (32, 4))
ys = jnp.sum(xs, axis=1, keepdims=True)
mlp_params = mlp.init(jax.random.PRNGKey(1), xs)


def mlp_loss(params):
    return jnp.mean((mlp.apply(params, xs) - ys) ** 2)


def run(tx, steps=20):
    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(mlp_loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = mlp_params, tx.init(mlp_params)
    for _ in range(steps):
        params, opt_state = step(params, opt_state)
    return params, opt_state


theirs, their_state = run(optax.adam(1e-2))
mine, my_state = run(my_adam(1e-2))
diff = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), theirs, mine)
print("largest parameter difference:", max(jax.tree_util.tree_leaves(diff)))
print("loss:", float(mlp_loss(mlp_params)), "->", float(mlp_loss(mine)))
print("optax state:", [type(s).__name__ for s in their_state])
print("our state:  ", [type(s).__name__ for s in my_state])

# %% [markdown]
# Optax's `chain` also wraps every link so that links which take extra
# keyword arguments and links which do not can be mixed; otherwise ours
# behaves the same.
#
# ## Learning-rate schedules
#
# In `optax.adam`, the last link is `scale_by_learning_rate(learning_rate)`.
# With a number it is a plain `scale(-learning_rate)`, whose state is empty.
# With a *schedule* (a function of the step count) it becomes
# `scale_by_schedule`, which must count steps, so its state is a counter:

# %% tags=["schedule-state"]
constant = optax.scale_by_learning_rate(1e-2)
scheduled = optax.scale_by_learning_rate(optax.linear_schedule(1e-2, 1e-3, 100))
print("constant: ", constant.init(mlp_params))
print("scheduled:", scheduled.init(mlp_params))

# %% [markdown]
# (It hands `scale_by_schedule` the function `lambda count: -schedule(count)`.)
# The `update` of `scale_by_schedule` evaluates that function at the stored
# count, multiplies the updates by it, and increments the count. The schedule is
# captured by the closure, so this is as jit-friendly as before: the count is
# state (traced), the schedule is code.
#
# A schedule that holds the learning rate for 100 steps, then decays it
# linearly from 1.0 to 0.2 over the next 300:

# %% tags=["linear-schedule"]
schedule = optax.linear_schedule(
    init_value=1.0, end_value=0.2, transition_steps=300, transition_begin=100
)
for count in [0, 100, 175, 250, 400, 1000]:
    print(f"count {count:4d}: {float(schedule(count)):.3f}")

# %% [markdown]
# Driving `scale_by_schedule` by hand shows the counter at work: a gradient
# of ones is multiplied by the function's value at counts 0, 1, 2, ...

# %% tags=["scale-by-schedule"]
tx = optax.scale_by_schedule(lambda count: -0.1 * (count + 1))
state = tx.init(jnp.zeros(2))
for _ in range(3):
    updates, state = tx.update(jnp.ones(2), state)
    print(f"count now {int(state.count)}, updates {updates}")
