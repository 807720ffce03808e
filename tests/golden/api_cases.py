"""Golden cases for the rest of linen's API, written once as functions of ``nn``.

``nn`` is ``flax.linen`` (with ``flax.linen.partitioning`` imported) when
``make_golden_api.py`` records them and ``minilinen`` (with
``minilinen.partitioning``) when ``tests/test_api_golden.py`` checks them. Each
case returns a :class:`Case` of ``transforms_cases.py``; its ``*_axes``
collections (T5X-style logical axis names) are recorded apart, as names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from golden.transforms_cases import Case, blocks, data, key

CASES: dict[str, Callable[[Any], Case]] = {}


def case(fn: Callable[[Any], Case]) -> Callable[[Any], Case]:
    """Register a case under its function name."""
    CASES[fn.__name__] = fn
    return fn


def axes_record(variables: Any, partitioning: Any) -> dict:
    """``get_axis_names`` of every ``*_axes`` collection, as JSON lists by path."""
    out = {}
    for col in variables:
        if col.endswith("_axes"):
            specs = partitioning.get_axis_names(variables[col])
            leaves = jax.tree_util.tree_leaves_with_path(
                specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
            )
            for path, spec in leaves:
                out[col + jax.tree_util.keystr(path)] = [
                    list(a) if isinstance(a, tuple) else a for a in spec
                ]
    return out


def arrays_only(variables: Any) -> dict:
    """The collections that hold arrays (not the ``*_axes`` name records)."""
    return {col: variables[col] for col in variables if not col.endswith("_axes")}


# --- flax.linen.partitioning -------------------------------------------------


@case
def scan_with_axes_params_and_stats(nn):
    p = nn.partitioning

    class SinDot(nn.Module):
        @nn.compact
        def __call__(self, x):
            w1 = p.param_with_axes(
                "w1", nn.initializers.xavier_normal(), (x.shape[-1], 5), axes=("emb", "mlp")
            )
            w2 = p.param_with_axes(
                "w2", nn.initializers.lecun_normal(), (5, x.shape[-1]), axes=("mlp", "emb")
            )
            y = jnp.sin(x @ w1) @ w2
            p.variable_with_axes("stats", "y", lambda: y, axes=("batch", "emb"))
            return y, None

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            layers = p.scan_with_axes(
                SinDot,
                variable_axes={"params": 0, "stats": 1},
                split_rngs={"params": True},
                in_axes=(),
                length=3,
                axis_name="layer",
                axes_collections=("params", "stats"),
            )(name="layers")
            y, _ = layers(x)
            return layers(y)[0]

    return Case(Model(), (data(2, 4),), key(31), grad=True)


@case
def vmap_with_axes_axis_1(nn):
    p = nn.partitioning

    class Foo(nn.Module):
        @nn.compact
        def __call__(self, x):
            w = p.param_with_axes("w", nn.initializers.uniform(), (4, 3), axes=("out", "in"))
            b = p.param_with_axes("b", nn.initializers.normal(0.5), (4,), axes=("out",))
            return w @ x + b

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return p.vmap_with_axes(
                Foo,
                variable_axes={"params": 1},
                split_rngs={"params": True},
                partitioning_axis_names={"params": "batch"},
            )(name="foo")(x)

    return Case(Model(), (data(2, 3),), key(32), grad=True)


@case
def partitioning_remat_static_argnums(nn):
    p = nn.partitioning
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            # Flax's partitioning.remat counts static_argnums after self: 1 is `train`.
            return p.remat(b["NoisyMlp"], static_argnums=(1,), prevent_cse=False)()(x, True)

    return Case(
        Model(),
        (data(2, 3),),
        {"params": key(33), "dropout": key(34)},
        apply_kwargs={"rngs": {"dropout": key(35)}},
        grad=True,
    )


@case
def param_with_axes_pytree_and_rules(nn):
    p = nn.partitioning

    def init(k, shape):
        k1, k2 = jax.random.split(k)
        return {"a": jax.random.normal(k1, shape), "b": jax.random.uniform(k2, shape)}

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            with p.axis_rules((("foo", None), ("bar", None))):
                pair = p.param_with_axes(
                    "pair", init, (3, 3), axes={"a": ("foo", "bar"), "b": ("bar", "foo")}
                )
                count = p.variable_with_axes("state", "count", jnp.zeros, (3,), axes=("foo",))
            count.value = count.value + x.sum(0)
            return x @ pair["a"] + x @ pair["b"].T + nn.Dense(3)(x)

    return Case(Model(), (data(2, 3),), key(36), apply_kwargs={"mutable": ["state"]})


# --- cases that return a tree of results (exact where ``exact`` says) ------------

OUTPUT_CASES: dict[str, Callable[[Any], dict]] = {}


def output_case(fn: Callable[[Any], dict]) -> Callable[[Any], dict]:
    """Register a case returning ``{name: tree}``; keys in its ``"exact"`` entry must
    be bit-identical, the rest equal to float32 rounding."""
    OUTPUT_CASES[fn.__name__] = fn
    return fn


@output_case
def functional_init_apply_and_lazy_init(nn):
    class AutoEncoder(nn.Module):
        def setup(self):
            self.enc = nn.Dense(2)
            self.dec = nn.Dense(3, kernel_init=nn.initializers.orthogonal())

        def encode(self, x):
            z = self.enc(x)
            self.sow("intermediates", "z", z)
            return z

        def decode(self, z):
            return self.dec(z)

    def roundtrip(model, x):
        return model.decode(nn.relu(model.encode(x)))

    x = data(2, 3)
    ae = AutoEncoder()
    y, variables = nn.init_with_output(roundtrip, ae)(key(40), x)
    applied, state = nn.apply(roundtrip, ae, mutable=["intermediates"])(variables, x)
    captured = nn.apply(roundtrip, ae, capture_intermediates=True)(variables, x)
    shape = jax.ShapeDtypeStruct((2, 3), jnp.float32)
    return {
        "exact": ["init", "init_with_output", "lazy_init"],
        "init": nn.init(roundtrip, ae)(key(40), x),
        "init_with_output": variables,
        "lazy_init": ae.lazy_init(key(41), shape, method=roundtrip),
        "y": y,
        "apply": applied,
        "sown": state,
        "captured": captured,
        "encode": nn.apply(lambda m, x: m.encode(x), ae)(variables, x),
    }
