"""Workloads 1-5: each implementation's init, train state, train step, batch and forward pass.

`build(workload, impl, size)` returns a `Case`. The linen implementations
share one source (`models.py`); the hand-written JAX ones (`raw.py`) take the
same variable trees, so variables initialized by one implementation run in
another (`raw.as_dicts` ports them), which is how the smoke test checks that
every implementation computes the same losses.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import raw
from benchmarks.impls import Impl
from benchmarks.models import has_scan, models

Step = Callable[[Any, tuple], tuple[Any, jax.Array]]


@dataclass(frozen=True)
class Case:
    """What the worker measures for one workload and one implementation."""

    init: Callable[[], Any]  # eager init from a fixed key, returns the variables
    make_state: Callable[[Any], Any]  # variables -> train state (params and optimizer state)
    make_step: Callable[[], Step]  # a newly created step(state, batch) -> (state, loss)
    batch: tuple
    apply: Callable[[Any], Any] | None = None  # un-jitted forward pass from the variables


class Unavailable(Exception):
    """The implementation lacks something the workload needs (reported, not fatal)."""


# Sizes per workload: "full" is what issue 7 specifies, "tiny" is for the smoke test.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "seed_mlp": {
        "full": dict(batch=5, n_in=8, hidden=32, out=2),
        "tiny": dict(batch=5, n_in=8, hidden=32, out=2),
    },
    "cnn_bn": {
        "full": dict(batch=64, image=28, channels=1, features=(32, 64), hidden=256, classes=10),
        "tiny": dict(batch=4, image=8, channels=1, features=(4, 8), hidden=16, classes=10),
    },
    "mlp48": {
        "full": dict(batch=32, n_in=256, depth=48, width=256),
        "tiny": dict(batch=4, n_in=16, depth=4, width=16),
    },
    "transformer": {
        "full": dict(batch=8, vocab=1024, seq=128, d_model=256, num_heads=4, num_layers=4),
        "tiny": dict(batch=2, vocab=50, seq=8, d_model=16, num_heads=4, num_layers=2),
    },
    "blocks4": {
        "full": dict(batch=32, depth=4, width=256, out=16, scan=False),
        "tiny": dict(batch=4, depth=2, width=8, out=4, scan=False),
    },
    "blocks64": {
        "full": dict(batch=32, depth=64, width=256, out=16, scan=False),
        "tiny": dict(batch=4, depth=3, width=8, out=4, scan=False),
    },
    "blocks64_scan": {
        "full": dict(batch=32, depth=64, width=256, out=16, scan=True),
        "tiny": dict(batch=4, depth=3, width=8, out=4, scan=True),
    },
}
# What each workload is, for the results table (the numbers refer to issue 7's list).
DESCRIPTIONS = {
    "seed_mlp": "1. seed 002 MLP 8 -> 32 -> 2, batch 5, adam",
    "cnn_bn": "2. CNN (2x conv + BatchNorm + avg-pool, Dense 256) on 28x28x1, batch 64, "
    "TrainState + adam",
    "mlp48": "3. 48-layer MLP of width 256, batch 32, adam",
    "transformer": "4. 4-block transformer, d_model 256, 4 heads, seq 128, batch 8, adamw",
    "blocks4": "5a. 4 residual blocks (LayerNorm, Dense 256, gelu), batch 32, adam",
    "blocks64": "5b. the same with 64 blocks, unrolled in Python",
    "blocks64_scan": "5c. the same with 64 blocks through nn.scan (raw: lax.scan)",
    "serialization": "6. to_bytes / from_bytes of a 256 MB params tree (64 x 1024x1024 float32)",
}
MODEL_WORKLOADS = tuple(SIZES)
WORKLOADS = (*MODEL_WORKLOADS, "serialization")
# Workloads whose un-jitted apply is measured (1 and 3 in issue 7).
APPLY_WORKLOADS = ("seed_mlp", "mlp48")

KEY_SEED = 0


def _rng(workload: str) -> np.random.Generator:
    """Fixed data per workload, the same in every process."""
    return np.random.default_rng(zlib.crc32(workload.encode()))


def _plain_step(loss_fn: Callable, tx: optax.GradientTransformation) -> Callable[[], Step]:
    """Steps over state = (params, opt_state) for a loss_fn(params, batch) -> loss."""

    def make_step() -> Step:
        def step(state, batch):
            params, opt_state = state
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        return step

    return make_step


def _plain_case(
    impl: Impl,
    tx: optax.GradientTransformation,
    module: Any,
    raw_init: Callable[[jax.Array], Any],
    raw_fn: Callable[[Any, jax.Array], jax.Array],
    loss_of_output: Callable[[jax.Array, jax.Array], jax.Array],
    batch: tuple,
    with_apply: bool,
) -> Case:
    """A Case for a stateless model trained by `tx` on batch = (inputs, targets)."""
    key = jax.random.key(KEY_SEED)
    x = batch[0]
    if impl.is_linen:
        apply = module.apply

        def init():
            return module.init(key, x)

        def loss_fn(params, batch):
            return loss_of_output(apply({"params": params}, batch[0]), batch[1])

        def forward(variables):
            return apply(variables, x)
    else:

        def init():
            return {"params": raw_init(key)}

        def loss_fn(params, batch):
            return loss_of_output(raw_fn(params, batch[0]), batch[1])

        def forward(variables):
            return raw_fn(variables["params"], x)

    def make_state(variables):
        params = variables["params"]
        return params, tx.init(params)

    return Case(init, make_state, _plain_step(loss_fn, tx), batch, forward if with_apply else None)


def _seed_loss(y_hat, labels):
    return optax.sigmoid_binary_cross_entropy(y_hat, labels).sum(axis=-1).mean()


def _mse(y, target):
    return jnp.mean((y - target) ** 2)


def _xent(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _seed_mlp(impl: Impl, s: dict) -> Case:
    # Seed 002's data: 8-bit integers as bits, labelled odd/even one-hot.
    ints = _rng("seed").integers(0, 255, size=(s["batch"], 1)).astype(np.uint8)
    x = np.unpackbits(ints, axis=-1).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[ints[:, 0] % 2]
    module = models(impl.nn).SeedMLP(s["hidden"], s["out"]) if impl.is_linen else None
    return _plain_case(
        impl,
        optax.adam(1e-2),
        module,
        lambda k: raw.seed_mlp_init(k, s["n_in"], s["hidden"], s["out"]),
        raw.seed_mlp,
        _seed_loss,
        (jnp.asarray(x), jnp.asarray(y)),
        with_apply=True,
    )


def _mlp48(impl: Impl, s: dict) -> Case:
    rng = _rng("mlp48")
    x = rng.standard_normal((s["batch"], s["n_in"]), dtype=np.float32)
    y = rng.standard_normal((s["batch"], s["width"]), dtype=np.float32)
    module = models(impl.nn).DeepMLP(s["depth"], s["width"]) if impl.is_linen else None
    return _plain_case(
        impl,
        optax.adam(1e-3),
        module,
        lambda k: raw.deep_mlp_init(k, s["n_in"], s["depth"], s["width"]),
        raw.deep_mlp,
        _mse,
        (jnp.asarray(x), jnp.asarray(y)),
        with_apply=True,
    )


def _transformer(impl: Impl, s: dict) -> Case:
    rng = _rng("transformer")
    tokens = rng.integers(0, s["vocab"], size=(s["batch"], s["seq"] + 1)).astype(np.int32)
    x, y = tokens[:, :-1], tokens[:, 1:]
    dims = {k: s[k] for k in ("vocab", "seq", "d_model", "num_heads", "num_layers")}
    module = models(impl.nn).Transformer(**dims) if impl.is_linen else None
    return _plain_case(
        impl,
        optax.adamw(1e-3),
        module,
        lambda k: raw.transformer_init(k, **dims),
        raw.transformer,
        _xent,
        (jnp.asarray(x), jnp.asarray(y)),
        with_apply=False,
    )


def _blocks(impl: Impl, s: dict) -> Case:
    if s["scan"] and impl.is_linen and not has_scan(impl.nn):
        raise Unavailable(f"{impl.name} has no nn.scan yet")
    rng = _rng("blocks")
    x = rng.standard_normal((s["batch"], s["width"]), dtype=np.float32)
    y = rng.standard_normal((s["batch"], s["out"]), dtype=np.float32)
    dims = {k: s[k] for k in ("depth", "width", "out", "scan")}
    module = models(impl.nn).BlockStack(**dims) if impl.is_linen else None
    return _plain_case(
        impl,
        optax.adam(1e-3),
        module,
        lambda k: raw.block_stack_init(k, **dims),
        raw.block_stack,
        _mse,
        (jnp.asarray(x), jnp.asarray(y)),
        with_apply=False,
    )


def _cnn(impl: Impl, s: dict) -> Case:
    rng = _rng("cnn")
    shape = (s["batch"], s["image"], s["image"], s["channels"])
    x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    y = jnp.asarray(rng.integers(0, s["classes"], size=(s["batch"],)).astype(np.int32))
    tx = optax.adam(1e-3)
    key = jax.random.key(KEY_SEED)
    dims = {k: s[k] for k in ("features", "hidden", "classes")}

    if impl.is_linen:
        if impl.train_state is None:
            raise Unavailable(f"{impl.name} has no training.train_state yet")
        module = models(impl.nn).CNN(**dims)
        state_cls = _bn_train_state(impl.train_state.TrainState)

        def init():
            return module.init(key, x, train=False)

        def make_state(variables):
            return state_cls.create(
                apply_fn=module.apply,
                params=variables["params"],
                tx=tx,
                batch_stats=variables["batch_stats"],
            )

        def make_step() -> Step:
            def step(state, batch):
                def loss_fn(params):
                    logits, updates = state.apply_fn(
                        {"params": params, "batch_stats": state.batch_stats},
                        batch[0],
                        train=True,
                        mutable=["batch_stats"],
                    )
                    return _xent(logits, batch[1]), updates

                (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
                state = state.apply_gradients(grads=grads)
                return state.replace(batch_stats=updates["batch_stats"]), loss

            return step

        return Case(init, make_state, make_step, (x, y))

    def raw_init():
        return raw.cnn_init(key, s["channels"], s["image"], **dims)

    def raw_state(variables):
        params = variables["params"]
        return {
            "step": jnp.asarray(0, jnp.int32),
            "params": params,
            "batch_stats": variables["batch_stats"],
            "opt_state": tx.init(params),
        }

    def raw_make_step() -> Step:
        def step(state, batch):
            def loss_fn(params):
                logits, stats = raw.cnn(params, state["batch_stats"], batch[0], True)
                return _xent(logits, batch[1]), stats

            (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            new = {
                "step": state["step"] + 1,
                "params": optax.apply_updates(state["params"], updates),
                "batch_stats": stats,
                "opt_state": opt_state,
            }
            return new, loss

        return step

    return Case(raw_init, raw_state, raw_make_step, (x, y))


@functools.cache
def _bn_train_state(base: type) -> type:
    """The library's TrainState with a `batch_stats` field, as the TrainState tutorial writes it."""

    class TrainState(base):
        batch_stats: Any

    return TrainState


_BUILDERS = {
    "seed_mlp": _seed_mlp,
    "cnn_bn": _cnn,
    "mlp48": _mlp48,
    "transformer": _transformer,
    "blocks4": _blocks,
    "blocks64": _blocks,
    "blocks64_scan": _blocks,
}


def build(workload: str, impl: Impl, size: str = "full") -> Case:
    """The Case of one model workload for one implementation; raises Unavailable if it can't run."""
    if workload not in _BUILDERS:
        raise ValueError(f"Unknown model workload {workload!r}; expected one of {MODEL_WORKLOADS}.")
    return _BUILDERS[workload](impl, SIZES[workload][size])
