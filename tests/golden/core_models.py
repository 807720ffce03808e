"""Core golden cases, part 1: module structure (compact, setup, fields, nesting).

Each case is written once as a function of ``nn`` (flax.linen or minilinen); see
``core_case.py``. Part 2 (``core_models_state.py``: collections, RNG streams, sow,
initializers, methods) registers itself when this module is imported, so
``CASES`` here holds every case.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from golden.core_case import CASES, Case, case, data, inits, key, lib

# --- compact modules and naming --------------------------------------------


@case
def linear(nn):
    return Case(lib(nn).Linear(3), (data(2, 4),), key(0))


@case
def linear_custom_init_no_bias(nn):
    layer = lib(nn).Linear(5, use_bias=False, kernel_init=inits.normal(0.5))
    return Case(layer, (data(3, 4),), key(1))


@case
def compact_mlp(nn):
    L = lib(nn).Linear

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = jax.nn.relu(L(8)(x))
            x = jax.nn.relu(L(8)(x))
            return L(2)(x)

    return Case(MLP(), (data(4, 3),), key(2))


@case
def compact_mixed_classes(nn):
    lb = lib(nn)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = lb.Scale()(lb.Linear(4)(x))
            return lb.Scale()(lb.Linear(4)(x))

    return Case(Net(), (data(2, 3),), key(3))


@case
def compact_explicit_names(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = L(4, name="encoder")(x) + L(4)(x)
            h = h + L(4, name="Linear_7")(x) + L(4)(x)
            return L(2, name="head")(h)

    return Case(Net(), (data(2, 3),), key(4))


@case
def compact_same_submodule_twice(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            d = L(4)
            return d(jnp.tanh(d(x))) + L(4)(x)

    return Case(Net(), (data(3, 4),), key(5))


@case
def compact_loop_of_blocks(nn):
    lb = lib(nn)

    class Block(nn.Module):
        features: int

        @nn.compact
        def __call__(self, x):
            return lb.RunningMean()(jax.nn.gelu(lb.Linear(self.features)(x)))

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(3):
                x = Block(4)(x)
            return x

    return Case(Net(), (data(5, 4),), key(6), apply_kwargs={"mutable": ["batch_stats"]})


@case
def compact_several_methods(nn):
    """Flax 0.12 allows @compact on more than one method of a class."""
    L = lib(nn).Linear

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return L(3)(x)

        @nn.compact
        def other(self, x):
            return L(2)(x) + L(2)(x)

    return Case(Net(), (data(2, 3),), key(7), apply_kwargs={"method": "__call__"})


# --- setup and containers of submodules --------------------------------------


@case
def setup_attributes_and_param(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        def setup(self):
            self.enc = L(4)
            self.scale = self.param("scale", inits.normal(1.0), (4,))
            self.dec = L(3)

        def __call__(self, x):
            return self.dec(jax.nn.relu(self.enc(x)) * self.scale)

    return Case(Net(), (data(2, 5),), key(8))


@case
def setup_list(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        features: tuple = (5, 4, 3)

        def setup(self):
            self.layers = [L(f) for f in self.features]

        def __call__(self, x):
            for i, layer in enumerate(self.layers):
                x = layer(x)
                if i != len(self.layers) - 1:
                    x = jax.nn.relu(x)
            return x

    return Case(Net(), (data(4, 4),), key(9))


@case
def setup_tuple_and_nested(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        def setup(self):
            self.blocks = (L(3), L(3))
            self.grid = [[L(3), L(3)], (L(3),)]

        def __call__(self, x):
            y = self.grid[0][1](x) + self.blocks[1](x)
            return y + self.grid[1][0](x) + self.blocks[0](x) + self.grid[0][0](x)

    return Case(Net(), (data(2, 3),), key(10))


@case
def setup_dict(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        def setup(self):
            self.heads = {"z": L(2), "a": L(3), "m": [L(2)]}

        def __call__(self, x):
            return self.heads["m"][0](x), self.heads["z"](x), self.heads["a"](x)

    return Case(Net(), (data(2, 4),), key(11))


@case
def setup_shared_called_twice(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        def setup(self):
            self.shared = L(4)
            self.out = L(2)

        def __call__(self, x):
            return self.out(self.shared(jnp.tanh(self.shared(x))))

    return Case(Net(), (data(3, 4),), key(12))


@case
def setup_child_with_state(nn):
    lb = lib(nn)

    class Net(nn.Module):
        def setup(self):
            self.proj = lb.Linear(3)
            self.norm = lb.RunningMean(momentum=0.5)

        def __call__(self, x):
            return self.norm(self.proj(x))

    return Case(Net(), (data(4, 2),), key(13), apply_kwargs={"mutable": ["batch_stats"]})


# --- submodules passed in as fields ------------------------------------------


@case
def field_submodule_top_level(nn):
    L = lib(nn).Linear

    class Outer(nn.Module):
        inner: nn.Module

        @nn.compact
        def __call__(self, x):
            return self.inner(x) + self.inner(x * 2.0) + L(3)(x)

    return Case(Outer(inner=L(3)), (data(2, 4),), key(14))


@case
def field_submodule_shared_in_compact(nn):
    lb = lib(nn)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            shared = lb.Linear(4)
            a = lb.Wrapper(shared)(x)
            return lb.Wrapper(shared)(a) + lb.Linear(4)(x)

    return Case(Net(), (data(2, 4),), key(15))


@case
def field_submodule_shared_in_setup(nn):
    lb = lib(nn)

    class Tied(nn.Module):
        def setup(self):
            self.emb = lb.Linear(4)
            self.a = lb.Wrapper(self.emb)
            self.b = lb.Wrapper(self.emb)

        def __call__(self, x):
            return self.b(self.a(x))

    return Case(Tied(), (data(3, 4),), key(16))


# --- deep nesting ------------------------------------------------------------


@case
def deep_nesting(nn):
    lb = lib(nn)

    class Level1(nn.Module):
        @nn.compact
        def __call__(self, x):
            return lb.Scale()(lb.Linear(4)(x))

    class Level2(nn.Module):
        def setup(self):
            self.inner = [Level1(), Level1()]

        def __call__(self, x):
            return self.inner[1](jnp.tanh(self.inner[0](x)))

    class Level3(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Level2(name="mid")(x) + Level2()(x)

    class Level4(nn.Module):
        def setup(self):
            self.body = Level3()
            self.head = lb.Linear(2)

        def __call__(self, x):
            return self.head(self.body(x))

    return Case(Level4(), (data(2, 4),), key(17))


@case
def compact_child_two_methods(nn):
    """Each call of a compact method names its submodules from 0 again."""
    L = lib(nn).Linear

    class Two(nn.Module):
        @nn.compact
        def __call__(self, x):
            return L(3)(x)

        @nn.compact
        def other(self, x):
            return L(3)(x) * L(3)(x)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            t = Two()
            return t(x) + t.other(x) + t(x)

    return Case(Net(), (data(2, 3),), key(49))


@case
def setup_unused_submodule_and_nowrap(nn):
    """Setup submodules get params only when called; a nowrap helper builds them."""
    L = lib(nn).Linear

    class Net(nn.Module):
        def setup(self):
            self.used = self.make_layer(3)
            self.unused = self.make_layer(5)
            self.bias = self.param("bias", inits.normal(1.0), (3,))

        @nn.nowrap
        def make_layer(self, features):
            return L(features, bias_init=inits.normal(0.1))

        def __call__(self, x):
            return self.used(x) + self.bias

    return Case(Net(), (data(2, 4),), key(50))


@case
def subclass_extends_parent(nn):
    L = lib(nn).Linear

    class Base(nn.Module):
        features: int = 3

        @nn.compact
        def __call__(self, x):
            return L(self.features)(x)

    class Child(Base):
        scale: float = 2.0

        def __call__(self, x):
            return self.scale * super().__call__(x)

    return Case(Child(features=4), (data(2, 3),), key(51))


# Part 2 registers its cases into CASES on import; imported last to keep the order.
from golden import core_models_state  # noqa: E402, F401

__all__ = ["CASES", "Case"]
