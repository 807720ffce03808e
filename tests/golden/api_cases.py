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


DEVICE_CASES: dict[str, Callable[[Any], dict]] = {}


def device_case(fn: Callable[[Any], dict]) -> Callable[[Any], dict]:
    """An output case recorded and checked on 4 simulated CPU devices
    (``--xla_force_host_platform_device_count=4``)."""
    DEVICE_CASES[fn.__name__] = fn
    return fn


@output_case
def training_helpers(nn):
    cu = library(nn, "training.common_utils")
    ju = library(nn, "jax_utils")
    tu = library(nn, "traverse_util")
    labels = jnp.array([[0, 2], [3, 1]])
    forest = [{"a": data(2), "b": (data(3, phase=i),)} for i in range(3)]
    params = {"enc": {"kernel": data(2, 2), "bias": data(2)}, "dec": {"kernel": data(2, 3)}}
    scaled = tu.path_aware_map(lambda path, x: x * 2 if "kernel" in path else -x, params)

    def body(carry, x):
        return carry * 0.5 + x.sum(), jnp.tanh(x + carry)

    xs = data(2, 3, 4)
    scans = {
        f"{axis}_{keepdims}_{unroll}": ju.scan_in_dim(body, 0.0, xs, axis, unroll, keepdims)
        for axis, keepdims, unroll in [(0, False, 1), ((2, 0), True, 2), ((1, 2), False, (3, 1))]
    }
    lazy = ju.partial_eval_by_shape(
        lambda x, n, w: (x @ w, w * 2, n.astype(jnp.float32)),
        [(2, 3), ((4,), jnp.int32)],
        data(3, 3),
    )
    unknown = [isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(lazy)]
    lazy = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), lazy)
    return {
        "exact": ["onehot", "onehot_custom", "stack_forest", "path_aware_map", "lazy"],
        "onehot": cu.onehot(labels, 4),
        "onehot_custom": cu.onehot(labels, 5, on_value=0.9, off_value=0.025),
        "stack_forest": cu.stack_forest(forest),
        "path_aware_map": scaled,
        "scan_in_dim": scans,
        "lazy": {"values": lazy, "unknown": np.array(unknown)},
    }


@device_case
def pmap_helpers_on_4_devices(nn):
    cu = library(nn, "training.common_utils")
    ju = library(nn, "jax_utils")
    ds_mod = library(nn, "training.dynamic_scale")

    def batch_mean(p, x, y):
        return jax.pmap(lambda x, y: (x * p).sum(-1) + y.mean(-1))(x, y)

    def stats(x, scale=1.0):
        return jax.pmap(lambda x: {"sum": x.sum(-1) * scale, "sq": x**2})(x)

    padded = {
        f"b{b}_min{m}": ju.pad_shard_unpad(batch_mean)(
            2.0, data(b, 3), data(b, 4), min_device_batch=m
        )
        for b, m in [(5, None), (8, None), (3, 3)]
    }
    padded["kw"] = ju.pad_shard_unpad(stats, static_argnums=(), static_argnames=("scale",))(
        x=data(6, 2), scale=3.0
    )
    # The padded (sharded) shapes show only in a static return: 2 per device, or 3 at least.
    static = ju.pad_shard_unpad(stats, static_argnums=(), static_return=True)
    padded["static_return"] = static(data(7, 2))
    padded["static_return_min3"] = static(data(7, 2), min_device_batch=3)
    replicated = ju.replicate({"w": data(3), "n": np.int32(7), "s": 1.5})
    prefetched = list(ju.prefetch_to_device(iter([data(4, 2), data(4, 2, phase=1.0)]), 2))
    steps = [jax.pmap(lambda x: {"loss": x.sum()})(data(4, 2, phase=i)) for i in range(3)]

    def scaled_step(ds, w, x):
        return ds.value_and_grad(lambda w: jnp.sum((w * x) ** 2), axis_name="d")(w)

    ds = ju.replicate(ds_mod.DynamicScale(growth_interval=1))
    pstep = jax.pmap(scaled_step, axis_name="d")
    ds_steps = []
    for x in (data(4, 3), data(4, 3).at[2, 0].set(jnp.inf), data(4, 3)):
        ds, finite, value, grad = pstep(ds, ju.replicate(data(3)), x)
        ds_steps.append([ds.scale, ds.fin_steps, finite, value, grad])
    return {
        "exact": ["shard", "replicated", "unreplicated", "prefetched", "metrics", "keys"],
        "shard": cu.shard({"x": data(8, 3), "y": (jnp.arange(4),)}),
        "keys": jax.random.key_data(cu.shard_prng_key(jax.random.key(3))),
        "replicated": replicated,
        "unreplicated": ju.unreplicate(replicated),
        "prefetched": prefetched,
        "metrics": cu.get_metrics(steps),
        "pad_shard_unpad": padded,
        "dynamic_scale": ds_steps,
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
