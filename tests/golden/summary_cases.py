"""Golden cases for ``tabulate``, written once as functions of ``nn``.

``nn`` is ``flax.linen`` when ``make_golden_summary.py`` records the tables and
``minilinen`` when ``tests/test_summary.py`` checks them. Each case gives the
module, its ``rngs``, the call's arguments and ``tabulate``'s options; every case
is rendered twice, as plain text and with ANSI styles, at a fixed width.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

CASES: dict[str, Callable[[Any], tuple]] = {}
WIDTH = 200  # the console width of every table (minilinen's default fits the table)
CONSOLES = {"plain": {"force_terminal": False, "width": WIDTH}, "ansi": {"width": WIDTH}}


def case(**options: Any) -> Callable:
    """Register ``fn(nn) -> (module, args, kwargs)`` under its name, with these options."""

    def register(fn: Callable) -> Callable:
        rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
        CASES[fn.__name__] = lambda nn: (*fn(nn), rngs, options)
        return fn

    return register


def blocks(nn: Any) -> dict[str, Any]:
    """The modules the cases share."""

    class Scaled(nn.Module):  # own variables and a submodule's
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(x) * self.param("scale", nn.initializers.ones, (3,))

    class Net(nn.Module):  # every collection kind, nested outputs
        @nn.compact
        def __call__(self, x, train: bool = True):
            x = Scaled()(nn.Dense(4)(x))
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(0.5, deterministic=not train)(x)
            self.variable("cache", "h", jnp.zeros, (2, 3))
            return {"out": x, "list": [x, (x, 1.5)], "nested": {"a": {"b": x}}}

    class Twice(nn.Module):  # one module called twice, inside one called twice
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(2)
            return dense(dense(x))

    class Outer(nn.Module):
        @nn.compact
        def __call__(self, x):
            twice = Twice()
            return twice(twice(x))

    return {"Net": Net, "Outer": Outer}


@case()
def net(nn):
    return blocks(nn)["Net"](), (jnp.ones((2, 3)),), {"train": False}


@case(depth=1)
def net_depth_1(nn):
    return blocks(nn)["Net"](), (jnp.ones((2, 3)),), {}


@case(depth=0)
def net_depth_0(nn):
    return blocks(nn)["Net"](), (jnp.ones((2, 3)),), {}


@case(compute_flops=True, compute_vjp_flops=True)
def net_flops(nn):
    return blocks(nn)["Net"](), (jnp.ones((2, 3)),), {}


@case(show_repeated=True)
def repeated(nn):
    return blocks(nn)["Outer"](), (jnp.ones((1, 2)),), {}


@case(show_repeated=True, depth=1)
def repeated_depth_1(nn):
    return blocks(nn)["Outer"](), (jnp.ones((1, 2)),), {}


@case()
def scalars_and_strings(nn):
    class Scalars(nn.Module):
        @nn.compact
        def __call__(self, x, n, f, label="", tag=None):
            return nn.Dense(2)(x) * n * f

    args = (jnp.ones((2, 3)), 3, np.float32(2.0))
    return Scalars(), args, {"label": "it's: x", "tag": "a" * 90}


@case()
def partitioned(nn):
    class Boxed(nn.Module):
        @nn.compact
        def __call__(self, x):
            init = nn.with_partitioning(nn.initializers.lecun_normal(), (None, "model"))
            y = nn.Dense(3, kernel_init=init)(x)
            return nn.Partitioned(y, ("data", None)), x

    return Boxed(), (jnp.ones((2, 3)),), {}


@case(compute_flops=True)
def conv_and_pool(nn):
    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.max_pool(nn.Conv(4, (3, 3))(x), (2, 2))
            return nn.ConvTranspose(2, (2, 2), strides=(2, 2))(x)

    return CNN(), (jnp.ones((1, 8, 8, 3)),), {}


@case()
def sequential(nn):
    return nn.Sequential([nn.Dense(3), nn.relu, nn.Dense(1)]), (jnp.ones((2, 3)),), {}


def render(nn: Any, name: str, console: str) -> str:
    """The table ``tabulate`` draws for one case on one console."""
    module, args, kwargs, rngs, options = CASES[name](nn)
    return nn.tabulate(module, rngs, console_kwargs=CONSOLES[console], **options)(*args, **kwargs)
