"""The trees whose bytes must equal Flax's, built the same way for Flax and minilinen.

``make_cases(train_state_cls, freeze)`` takes the library's TrainState class and
``freeze`` so the generator (Flax) and the tests (minilinen) build identical
trees. Values come from NumPy's seeded generator and fixed arithmetic, never
from ``jax.random``, so they do not depend on the threefry setting.
"""

from __future__ import annotations

import collections
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax

# Cases whose bytes come from Flax with ``MAX_CHUNK_SIZE`` lowered to this value.
CHUNKED_MAX_CHUNK_SIZE = 64
CHUNKED_CASES = ("chunked_arrays",)
# Cases serialized with ``msgpack_serialize`` (dict keys sorted) instead of ``to_bytes``.
MSGPACK_SERIALIZE_CASES = ("msgpack_serialize_sorted",)

Point = collections.namedtuple("Point", ["x", "y"])


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _params(seed: int) -> dict:
    r = _rng(seed)
    return {
        "Dense_0": {
            "kernel": jnp.asarray(r.normal(size=(4, 3)), jnp.float32),
            "bias": jnp.asarray(r.normal(size=(3,)), jnp.float32),
        },
        "Dense_1": {
            "kernel": jnp.asarray(r.normal(size=(3, 2)), jnp.float32),
            "bias": jnp.zeros((2,), jnp.float32),
        },
    }


def _grads_like(params: Any, scale: float) -> Any:
    return jax.tree_util.tree_map(lambda p: jnp.full_like(p, scale) + p * 0.5, params)


def make_cases(train_state_cls: type, freeze: Any) -> dict[str, Any]:
    """Every golden case: name -> tree (to be written with ``to_bytes``)."""

    class BatchStatsState(train_state_cls):
        batch_stats: Any

    cases: dict[str, Any] = {}

    adam = train_state_cls.create(
        apply_fn=None, params=freeze({"params": _params(0)}), tx=optax.adam(1e-2)
    )
    for scale in (0.1, -0.3):
        adam = adam.apply_gradients(grads=_grads_like(adam.params, scale))
    cases["train_state_adam"] = adam

    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.inject_hyperparams(optax.sgd)(learning_rate=0.05, momentum=0.9),
    )
    bn = BatchStatsState.create(
        apply_fn=None,
        params=_params(1),
        tx=tx,
        batch_stats={"BatchNorm_0": {"mean": jnp.arange(3.0), "var": jnp.ones(3)}},
    )
    bn = bn.apply_gradients(
        grads=_grads_like(bn.params, 0.2),
        batch_stats={"BatchNorm_0": {"mean": jnp.arange(3.0) * 0.5, "var": jnp.ones(3) * 2}},
    )
    cases["train_state_batch_stats_chain"] = bn

    r = _rng(2)
    cases["ml_dtypes"] = {
        "bf16": jnp.asarray(r.normal(size=(3, 5)), jnp.bfloat16),
        "bf16_scalar": jnp.bfloat16(1.5),
        "f16": r.normal(size=(4,)).astype(np.float16),
        "fp8_e4m3fn": r.normal(size=(6,)).astype(ml_dtypes.float8_e4m3fn),
        "fp8_e5m2": r.normal(size=(2, 2)).astype(ml_dtypes.float8_e5m2),
        "int4": np.array([-8, -1, 0, 7], dtype=ml_dtypes.int4),
    }
    cases["complex"] = {
        "py": 1.5 - 2.25j,
        "np64": np.complex64(3 + 4j),
        "np128": np.complex128(-1e300 + 1e-300j),
        "arr64": (r.normal(size=(2, 3)) + 1j * r.normal(size=(2, 3))).astype(np.complex64),
        "arr128": np.array([1j, -1j, 0.5]),
    }
    cases["scalars"] = {
        "int": 7,
        "neg": -129,
        "big": 2**63 + 5,
        "int64_min": -(2**63),
        "float": 0.1,
        "bool": True,
        "none": None,
        "str": "h\u00e9llo",
        "bytes": b"\x00\xffraw",
        "np_int8": np.int8(-5),
        "np_uint64": np.uint64(2**64 - 1),
        "np_float16": np.float16(0.5),
        "np_float32": np.float32(3.25),
        "np_float64": np.float64(-2.5),
        "np_bool": np.bool_(False),
        "zero_d_f32": np.array(1.25, np.float32),
        "zero_d_i64": np.array(-3, np.int64),
        "jax_scalar": jnp.float32(2.0),
        "jax_zero_d": jnp.array(5, jnp.int32),
    }
    cases["nested_lists"] = {
        "layers": [
            {"w": np.arange(4.0).reshape(2, 2)},
            (1, [2, np.arange(3, dtype=np.int16)], (None, "x")),
            [],
        ],
        "pair": (0.5, [True, False]),
        "many": list(range(20)),
    }
    cases["namedtuples_and_tuples"] = {
        "point": Point(x=np.float32(1), y=(np.arange(2), Point(3, 4))),
        "adam_state": optax.adam(1e-3).init({"w": jnp.ones((2, 2))}),
        "empty": (),
    }
    big_keys = {f"k{i:02d}": i for i in range(20)}
    cases["sizes"] = {
        "empty_dict": {},
        "zero_size": np.zeros((0, 3), np.float32),
        "zero_size_int": np.zeros((2, 0), np.int32),
        "map16": big_keys,
        "long_str": "s" * 300,
        "bin16_array": np.arange(100, dtype=np.float32),
        "bin32_array": np.arange(20000, dtype=np.float32),
        "fixext16": np.arange(6, dtype=np.int8),
    }
    cases["int_and_bool_dtypes"] = {
        "i8": np.array([-128, 127], np.int8),
        "i16": np.array([-(2**15), 2**15 - 1], np.int16),
        "i32": np.array([-(2**31), 2**31 - 1], np.int32),
        "i64": np.array([-(2**63), 2**63 - 1], np.int64),
        "u8": np.array([0, 255], np.uint8),
        "u16": np.array([0, 2**16 - 1], np.uint16),
        "u32": np.array([0, 2**32 - 1], np.uint32),
        "u64": np.array([0, 2**64 - 1], np.uint64),
        "bool": np.array([[True, False], [False, True]]),
        "f64": np.array([np.inf, -np.inf, 0.0, -0.0, 5e-324]),
    }
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    cases["non_contiguous"] = {
        "transposed": base.T,
        "strided": base[::2, ::3],
        "fortran": np.asfortranarray(base),
        "negative_stride": base[::-1],
        "jax_transposed": jnp.asarray(base).T,
    }
    cases["frozen_nested"] = freeze(
        {"params": {"b": {"z": np.ones(2)}, "a": {"y": np.zeros(1)}}, "consts": {"c": 3}}
    )
    cases["chunked_arrays"] = {
        "big": np.arange(50, dtype=np.float32).reshape(5, 10),
        "nested": {"also_big": jnp.arange(17, dtype=jnp.int32)},
        "exact": np.arange(16, dtype=np.float32),
        "small": np.arange(3, dtype=np.float32),
        "in_list": [np.arange(40, dtype=np.int16)],
        "complex_items": np.arange(9, dtype=np.complex128),
    }
    cases["msgpack_serialize_sorted"] = {
        "zeta": {"b": 1, "a": np.arange(2)},
        "alpha": [{"y": 2, "x": 3}],
        "mid": 0.5,
    }
    return cases


TRAIN_STEPS = 25


def training_data() -> tuple[np.ndarray, np.ndarray]:
    """A small regression problem: 32 samples of 4 features, 2 targets."""
    r = _rng(7)
    x = r.normal(size=(32, 4)).astype(np.float32)
    w = r.normal(size=(4, 2)).astype(np.float32)
    y = (np.tanh(x @ w) + 0.1 * r.normal(size=(32, 2))).astype(np.float32)
    return x, y


def run_training(nn: Any, train_state_cls: type, steps: int = TRAIN_STEPS) -> list[float]:
    """Trains a two-layer MLP with TrainState and Adam; returns the loss of every step.

    ``nn`` is ``flax.linen`` for the golden data and ``minilinen`` in the test; the
    code is the same line for line.
    """

    class MLP(nn.Module):
        hidden: int = 16

        @nn.compact
        def __call__(self, x):
            x = nn.Dense(self.hidden)(x)
            x = nn.relu(x)
            return nn.Dense(2)(x)

    x, y = training_data()
    model = MLP()
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    state = train_state_cls.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-2))

    @jax.jit
    def train_step(state, x, y):
        def loss_fn(params):
            pred = state.apply_fn({"params": params}, x)
            return jnp.mean((pred - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    losses = []
    for _ in range(steps):
        state, loss = train_step(state, x, y)
        losses.append(float(loss))
    return losses
