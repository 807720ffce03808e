"""Golden cases for ``fp8_ops``, written once as functions of ``nn``.

``nn`` is ``flax.linen`` when ``make_golden_fp8.py`` records them and ``minilinen``
when ``tests/test_fp8_golden.py`` checks them. Each case returns ``{name: tree}``
(as ``api_cases.output_case``); the keys in its ``"exact"`` entry must be
bit-identical to Flax's, the rest equal to float32 rounding. Training runs
``TrainState.apply_gradients``, so the ``'_overwrite_with_gradient'`` update is
checked step by step.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

CASES: dict[str, Callable[[Any], dict]] = {}


def case(fn: Callable[[Any], dict]) -> Callable[[Any], dict]:
    """Register a case under its function name."""
    CASES[fn.__name__] = fn
    return fn


def data(*shape: int, seed: int = 0, scale: float = 1.0) -> jax.Array:
    """Normal float32 inputs from NumPy, so they do not depend on the threefry setting."""
    return jnp.asarray(np.random.RandomState(seed).standard_normal(shape) * scale, jnp.float32)


def fp8_ops(nn: Any) -> Any:
    """``flax.linen.fp8_ops`` or ``minilinen.layers.fp8_ops``."""
    if nn.__name__.startswith("flax"):
        return importlib.import_module("flax.linen.fp8_ops")
    return importlib.import_module("minilinen.layers.fp8_ops")


def train(nn: Any, model: Any, x: jax.Array, steps: int, seed: int) -> dict:
    """Init, then ``steps`` Adam steps of ``sum(model(x) * dy)`` through a TrainState."""
    root = nn.__name__.split(".")[0]
    train_state = importlib.import_module(f"{root}.training.train_state")
    variables = model.init(jax.random.PRNGKey(seed), x)
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=variables, tx=optax.adam(0.05)
    )

    @jax.jit
    def step(state, x, dy):
        def loss(v):
            y = state.apply_fn(v, x)
            return jnp.sum(y * dy.astype(y.dtype)), y

        (value, y), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
        f32 = jnp.float32  # npz has no bfloat16
        return state.apply_gradients(grads=grads), (value.astype(f32), y.astype(f32), grads)

    out = {"init": variables}
    for i in range(steps):
        x_i = x * (1.0 + 0.5 * i)  # growing inputs, so the histories and scales move
        dy = data(*model.apply(variables, x).shape, seed=seed + 100 + i, scale=2.0**i)
        state, (value, y, grads) = step(state, x_i, dy)
        out[f"step{i}"] = {"loss": value, "y": y, "grads": grads, "variables": state.params}
    return out


@case
def dense_general_fp8_direct(nn):
    model = nn.DenseGeneral(features=(3, 2), dot_general_cls=nn.Fp8DotGeneral)
    out = train(nn, model, data(4, 6, seed=1), steps=3, seed=1)
    return {"exact": ["init"], **out}


@case
def dense_nanoo_short_history(nn):
    cls = functools.partial(nn.NANOOFp8DotGeneralOp, amax_history_length=3)
    model = nn.Dense(5, dot_general_cls=cls)
    out = train(nn, model, data(2, 3, 4, seed=2), steps=4, seed=2)
    return {"exact": ["init"], **out}


@case
def dense_fp8_dot_general_op_bf16(nn):
    with warnings.catch_warnings():  # Flax deprecates Fp8DotGeneralOp
        warnings.simplefilter("ignore", DeprecationWarning)
        model = nn.Dense(4, dtype=jnp.bfloat16, dot_general_cls=nn.Fp8DotGeneralOp)
        out = train(nn, model, data(3, 5, seed=3), steps=2, seed=3)
    return {"exact": ["init"], **out}


@case
def fp8_einsum_steps(nn):
    model = nn.Fp8Einsum(amax_history_length=5)
    x, w = data(2, 3, 8, seed=4), data(6, 8, seed=5)
    variables = model.init(jax.random.PRNGKey(4), "...k,nk->...n", x, w)
    out = {"init": variables}

    def loss(v, x, w, g):
        y = model.apply(v, "...k,nk->...n", x, w)
        return jnp.sum(y * g), y

    for i in range(3):
        g = data(2, 3, 6, seed=10 + i, scale=3.0**i)
        (value, y), grads = jax.value_and_grad(loss, (0, 1, 2), has_aux=True)(variables, x, w, g)
        variables = {"_overwrite_with_gradient": grads[0]["_overwrite_with_gradient"]}
        out[f"step{i}"] = {"loss": value, "y": y, "grads": grads}
        x, w = x * 1.7, w * 0.6
    return {"exact": ["init"], **out}


@case
def fp8_einsum_plain_matmul(nn):
    model = nn.Fp8Einsum()
    x, w = data(5, 4, seed=6), data(4, 3, seed=7)
    variables = model.init(jax.random.PRNGKey(5), "mk,kn->mn", x, w)

    def loss(v, x, w):
        return jnp.sum(jnp.sin(model.apply(v, "mk,kn->mn", x, w)))

    value, grads = jax.value_and_grad(loss, (0, 1, 2))(variables, x, w)
    return {"exact": ["init"], "init": variables, "loss": value, "grads": grads}


@case
def fp8_einsum_batched(nn):
    model = nn.Fp8Einsum(amax_history_length=2)
    eqn, x, w = "bmk,bkn->bnm", data(2, 3, 4, seed=12, scale=4.0), data(2, 4, 5, seed=13)
    variables = model.init(jax.random.PRNGKey(6), eqn, x, w)

    def loss(v, x, w):
        return jnp.sum(model.apply(v, eqn, x, w) * data(2, 5, 3, seed=14))

    value, grads = jax.value_and_grad(loss, (0, 1, 2))(variables, x, w)
    return {"exact": ["init"], "init": variables, "loss": value, "grads": grads}


@case
def quantization_functions(nn):
    ops = fp8_ops(nn)
    x = data(4, 5, seed=8, scale=300.0)
    scale, history = jnp.array([0.7]), jnp.array([3.0, 250.0, 0.0, 12.0])
    out = {}
    for q in (jnp.float8_e4m3fn, jnp.float8_e5m2, jnp.float8_e4m3fnuz, jnp.float8_e5m2fnuz):
        name = jnp.dtype(q).name
        out[name] = {
            "quantize": ops.quantize(x, q, scale, jnp.float32).astype(jnp.float32),
            "dequantize": ops.dequantize(x.astype(q), jnp.float32, scale),
            "qdq": ops.qdq(x, q, scale, jnp.float32),
            "qdq_bf16": ops.qdq(x.astype(jnp.bfloat16), q, scale, jnp.bfloat16).astype(jnp.float32),
            "qdu": ops.quantize_dequantize_update(x, q, scale, history, jnp.float32),
        }
    amax = jnp.array([0.0, 2.5, jnp.inf, 1e-3, 700.0])
    out["compute_scale"] = ops.compute_scale(amax, jnp.full((5,), 0.25), 448.0)
    out["compute_scale_margin"] = ops.compute_scale(amax, jnp.ones((5,)), 57344.0, margin=2)
    out["compute_amax_history"] = ops.compute_amax_history(x, history)
    return out


@case
def qdq_rules_and_scaled_dot(nn):
    ops = fp8_ops(nn)
    x, w, g = data(3, 4, seed=9), data(4, 2, seed=10, scale=5.0), data(3, 2, seed=11)
    scale, history = jnp.array([0.5]), jnp.array([2.0, 0.0, 9.0])

    def in_out(x, s_in, h_in, s_out, h_out):
        y = ops.in_qdq(jnp.float32, jnp.float8_e4m3fn, x, s_in, h_in)
        return jnp.sum(ops.out_qdq(jnp.float32, jnp.float8_e5m2, y * 3.0, s_out, h_out) * x)

    def scaled(x, w, *meta):
        kwargs = dict(zip(("lhs_scale", "rhs_scale", "grad_scale"), meta[:3], strict=True))
        names = ("lhs_amax_history", "rhs_amax_history", "grad_amax_history")
        kwargs.update(zip(names, meta[3:], strict=True))
        dims = (((1,), (0,)), ((), ()))
        y = ops.fp8_scaled_dot_general(x, w, dims, preferred_element_type=jnp.float32, **kwargs)
        return jnp.sum(y * g)

    meta = (scale, scale * 2, scale * 4, history, history * 3, history / 2)

    # A scale and history reused in a scan, in Flax's max-accumulating meta dtype.
    def scanned(x, h, s):
        h, s = (jax.lax.convert_element_type(v, ops.fp32_max_grad) for v in (h, s))

        def body(c, _):
            return ops.in_qdq(jnp.float32, jnp.float8_e4m3fn, c, s, h), None

        return jnp.sum(jax.lax.scan(body, x, None, length=3)[0])

    dims = (((1,), (0,)), ((), ()))
    dot = functools.partial(ops.dot_general_with_precision, dimension_numbers=dims)
    return {
        "in_out": jax.value_and_grad(in_out, range(5))(x, scale, history, scale * 3, history),
        "scaled": jax.value_and_grad(scaled, range(8))(x, w, *meta),
        "scaled_jit": jax.jit(jax.grad(scaled, range(8)))(x, w, *meta),
        "scanned": jax.grad(scanned, range(3))(x, history, scale),
        "dot_jvp": jax.jvp(lambda a, b: dot(a, b), (x, w), (x * 2, w - 1)),
    }
