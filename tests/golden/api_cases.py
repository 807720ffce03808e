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
import numpy as np

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


def library(nn: Any, name: str) -> Any:
    """``flax.<name>`` or ``minilinen.<name>``, whichever library ``nn`` belongs to."""
    import importlib

    return importlib.import_module(f"{nn.__name__.split('.')[0]}.{name}")


@output_case
def training_helpers(nn):
    cu = library(nn, "training.common_utils")
    ju = library(nn, "jax_utils")
    tu = library(nn, "traverse_util")
    labels = jnp.array([[0, 2], [3, 1]])
    forest = [{"a": data(2), "b": (data(3, phase=i),)} for i in range(3)]
    params = {"enc": {"kernel": data(2, 2), "bias": data(2)}, "dec": {"kernel": data(2, 3)}}
    scaled = tu.path_aware_map(lambda path, x: x * 2 if "kernel" in path else -x, params)

    def batch_mean(p, x, y):
        return jax.pmap(lambda x, y: (x * p).sum(-1) + y.mean(-1))(x, y)

    padded = ju.pad_shard_unpad(batch_mean)(2.0, data(5, 3), data(5, 4), min_device_batch=2)
    replicated = ju.replicate({"w": data(3), "n": np.int32(7)})
    prefetched = list(ju.prefetch_to_device(iter([data(1, 2), data(1, 2, phase=1.0)]), 2))
    return {
        "exact": ["onehot", "onehot_custom", "stack_forest", "path_aware_map", "unreplicated"],
        "onehot": cu.onehot(labels, 4),
        "onehot_custom": cu.onehot(labels, 5, on_value=0.9, off_value=0.025),
        "stack_forest": cu.stack_forest(forest),
        "shard": cu.shard({"x": data(4, 3)}),
        "path_aware_map": scaled,
        "pad_shard_unpad": padded,
        "unreplicated": ju.unreplicate(replicated),
        "prefetched": prefetched,
    }


@output_case
def dynamic_scale_and_early_stopping(nn):
    ds_mod = library(nn, "training.dynamic_scale")
    es_mod = library(nn, "training.early_stopping")

    def loss(w, x):
        return jnp.sum((w * x) ** 2), w.sum()

    ds = ds_mod.DynamicScale(growth_interval=2, scale=2.0**100)
    steps = []
    for x in (1e10, 1.0, 1.0, 1.0, 1.0, float("inf")):
        ds, finite, (value, aux), grad = ds.value_and_grad(loss, has_aux=True)(data(3), x)
        steps.append({"scale": ds.scale, "fin_steps": ds.fin_steps, "finite": finite,
                      "value": value, "aux": aux, "grad": grad})  # fmt: skip
    es = es_mod.EarlyStopping(min_delta=0.1, patience=1)
    history = []
    for metric in (1.0, 0.95, 0.95, 0.5, 0.45, 0.44, 0.43):
        es = es.update(metric)
        history.append([es.best_metric, es.patience_count, es.should_stop, es.has_improved])
    reset = es.reset()
    history.append([reset.best_metric, reset.patience_count, reset.should_stop, reset.min_delta])
    return {"exact": ["steps", "early_stopping"], "steps": steps,
            "early_stopping": jnp.array(history, jnp.float32)}  # fmt: skip
