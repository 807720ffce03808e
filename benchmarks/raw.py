"""Hand-written JAX versions of the benchmark models: the floor the libraries are measured against.

Parameters live in plain nested dicts with the same names and shapes as the
linen models' (`Dense_0/kernel`, ...), so parameters initialized by either
library plug straight in, and the leaf order, which XLA:CPU is sensitive to,
is the same. The math follows the same op order as the layers (statistics
as E[x] and E[x^2] side by side, rsqrt(var + eps) * scale, scaled queries).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Params = dict[str, Any]

lecun_normal = jax.nn.initializers.lecun_normal()
zeros = jax.nn.initializers.zeros
ones = jax.nn.initializers.ones
embed_init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
pos_init = jax.nn.initializers.normal(0.02)


def _keys(key: jax.Array, n: int) -> Iterator[jax.Array]:
    return iter(jax.random.split(key, n))


# --- layers ------------------------------------------------------------------


def _feature(v: jax.Array, ndim: int) -> jax.Array:
    """A per-feature bias or scale reshaped to broadcast over the trailing axes of an ndim array."""
    return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def _contract(x: jax.Array, kernel: jax.Array, n: int) -> jax.Array:
    """Contract the last `n` axes of x with the first `n` axes of kernel."""
    dims = (tuple(range(x.ndim - n, x.ndim)), tuple(range(n)))
    return lax.dot_general(x, kernel, (dims, ((), ())))


def dense_init(key: jax.Array, n_in: int, n_out: int) -> Params:
    """A Dense layer's parameters: LeCun-normal kernel, zero bias."""
    return {"kernel": lecun_normal(key, (n_in, n_out)), "bias": zeros(key, (n_out,))}


def dense(p: Params, x: jax.Array) -> jax.Array:
    """x @ kernel + bias, contracting the last axis of x with the first of kernel."""
    y = _contract(x, p["kernel"], 1)
    return y + _feature(p["bias"], y.ndim)


def conv_init(key: jax.Array, size: tuple[int, int], n_in: int, n_out: int) -> Params:
    """A 2-D convolution's HWIO kernel and bias."""
    return {"kernel": lecun_normal(key, (*size, n_in, n_out)), "bias": zeros(key, (n_out,))}


def conv(p: Params, x: jax.Array) -> jax.Array:
    """Stride-1 'SAME' convolution of NHWC inputs."""
    y = lax.conv_general_dilated(
        x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + _feature(p["bias"], y.ndim)


def norm_init(n: int) -> Params:
    """Scale and bias of a normalization layer."""
    return {"scale": jnp.ones((n,)), "bias": jnp.zeros((n,))}


def moments(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Mean and variance as E[x] and E[x^2] side by side, the variance clipped at 0."""
    x2 = lax.square(x)
    mean, mean2 = x.mean(axes), x2.mean(axes)
    return mean, jnp.maximum(0.0, mean2 - lax.square(mean))


def normalize(
    p: Params, x: jax.Array, mean: jax.Array, var: jax.Array, axes: tuple[int, ...], eps: float
) -> jax.Array:
    """(x - mean) * (rsqrt(var + eps) * scale) + bias, the statistics reduced over `axes`."""
    mean, var = jnp.expand_dims(mean, axes), jnp.expand_dims(var, axes)
    y = x - mean
    mul = lax.rsqrt(var + eps) * _feature(p["scale"], x.ndim)
    return y * mul + _feature(p["bias"], x.ndim)


def layer_norm(p: Params, x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """LayerNorm over the last axis."""
    axes = (x.ndim - 1,)
    mean, var = moments(x, axes)
    return normalize(p, x, mean, var, axes, eps)


def batch_norm(
    p: Params, stats: Params, x: jax.Array, train: bool, momentum: float = 0.99, eps: float = 1e-5
) -> tuple[jax.Array, Params]:
    """BatchNorm over all axes but the last; returns the output and the new running stats."""
    axes = tuple(range(x.ndim - 1))
    if not train:
        return normalize(p, x, stats["mean"], stats["var"], axes, eps), stats
    mean, var = moments(x, axes)
    new = {
        "mean": momentum * stats["mean"] + (1 - momentum) * mean,
        "var": momentum * stats["var"] + (1 - momentum) * var,
    }
    return normalize(p, x, mean, var, axes, eps), new


def avg_pool(x: jax.Array, size: int) -> jax.Array:
    """Non-overlapping size x size average pooling of NHWC inputs."""
    window = (1, size, size, 1)
    return lax.reduce_window(x, 0.0, lax.add, window, window, "VALID") / (size * size)


def attention_init(key: jax.Array, d: int, heads: int) -> Params:
    """Query/key/value/out projections of multi-head attention (heads x head_dim kernels)."""
    k = _keys(key, 4)
    hd = d // heads

    def proj(key):
        kernel = lecun_normal(key, (d, heads * hd)).reshape(d, heads, hd)
        return {"kernel": kernel, "bias": jnp.zeros((heads, hd))}

    p = {name: proj(next(k)) for name in ("query", "key", "value")}
    out = lecun_normal(next(k), (heads * hd, d)).reshape(heads, hd, d)
    p["out"] = {"kernel": out, "bias": jnp.zeros((d,))}
    return p


def attention(p: Params, x: jax.Array, mask: jax.Array) -> jax.Array:
    """Causal multi-head self-attention of x with shape (batch, seq, d)."""
    q, k, v = (dense(p[n], x) for n in ("query", "key", "value"))
    q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    w = jnp.einsum("...qhd,...khd->...hqk", q, k)
    w = jnp.where(mask, w, jnp.finfo(w.dtype).min)
    w = jax.nn.softmax(w)
    y = jnp.einsum("...hqk,...khd->...qhd", w, v)
    y = _contract(y, p["out"]["kernel"], 2)
    return y + _feature(p["out"]["bias"], y.ndim)


def causal_mask(tokens: jax.Array) -> jax.Array:
    """The (batch, 1, seq, seq) float mask letting query i see keys 0..i."""
    idx = jnp.broadcast_to(jnp.arange(tokens.shape[-1], dtype=jnp.int32), tokens.shape)
    mask = jnp.greater_equal(idx[..., :, None], idx[..., None, :])
    return mask[..., None, :, :].astype(jnp.float32)


# --- models ------------------------------------------------------------------


def seed_mlp_init(key: jax.Array, n_in: int = 8, hidden: int = 32, out: int = 2) -> Params:
    """Parameters of seed 002's MLP."""
    k = _keys(key, 2)
    return {
        "Dense_0": dense_init(next(k), n_in, hidden),
        "Dense_1": dense_init(next(k), hidden, out),
    }


def seed_mlp(params: Params, x: jax.Array) -> jax.Array:
    """Seed 002's MLP forward pass."""
    return dense(params["Dense_1"], jax.nn.relu(dense(params["Dense_0"], x)))


def cnn_init(
    key: jax.Array, channels: int, image: int, features: tuple, hidden: int, classes: int
) -> dict[str, Params]:
    """Parameters and BatchNorm running statistics of the CNN."""
    k = _keys(key, len(features) + 2)
    params, stats = {}, {}
    n_in = channels
    for i, f in enumerate(features):
        params[f"Conv_{i}"] = conv_init(next(k), (3, 3), n_in, f)
        params[f"BatchNorm_{i}"] = norm_init(f)
        stats[f"BatchNorm_{i}"] = {"mean": jnp.zeros((f,)), "var": jnp.ones((f,))}
        n_in = f
        image //= 2
    params["Dense_0"] = dense_init(next(k), image * image * n_in, hidden)
    params["Dense_1"] = dense_init(next(k), hidden, classes)
    return {"params": params, "batch_stats": stats}


def cnn(params: Params, stats: Params, x: jax.Array, train: bool) -> tuple[jax.Array, Params]:
    """The CNN forward pass; returns logits and the new running statistics."""
    new_stats = {}
    i = 0
    while f"Conv_{i}" in params:
        x = conv(params[f"Conv_{i}"], x)
        name = f"BatchNorm_{i}"
        x, new_stats[name] = batch_norm(params[name], stats[name], x, train)
        x = avg_pool(jax.nn.relu(x), 2)
        i += 1
    x = x.reshape((x.shape[0], -1))
    x = jax.nn.relu(dense(params["Dense_0"], x))
    return dense(params["Dense_1"], x), new_stats


def deep_mlp_init(key: jax.Array, n_in: int, depth: int, width: int) -> Params:
    """Parameters of the deep MLP, keyed Dense_0 .. Dense_{depth-1}."""
    k = _keys(key, depth)
    return {
        f"Dense_{i}": dense_init(next(k), n_in if i == 0 else width, width) for i in range(depth)
    }


def deep_mlp(params: Params, x: jax.Array) -> jax.Array:
    """The deep MLP forward pass."""
    depth = len(params)
    for i in range(depth):
        x = dense(params[f"Dense_{i}"], x)
        if i < depth - 1:
            x = jax.nn.relu(x)
    return x


def transformer_init(
    key: jax.Array, vocab: int, seq: int, d_model: int, num_heads: int, num_layers: int
) -> Params:
    """Parameters of the decoder-only transformer."""
    k = _keys(key, 4 + 3 * num_layers)
    d = d_model
    p: Params = {
        "Embed_0": {"embedding": embed_init(next(k), (vocab, d))},
        "pos_embedding": pos_init(next(k), (seq, d)),
    }
    for i in range(num_layers):
        p[f"Block_{i}"] = {
            "LayerNorm_0": norm_init(d),
            "MultiHeadDotProductAttention_0": attention_init(next(k), d, num_heads),
            "LayerNorm_1": norm_init(d),
            "Dense_0": dense_init(next(k), d, 4 * d),
            "Dense_1": dense_init(next(k), 4 * d, d),
        }
    p["LayerNorm_0"] = norm_init(d)
    p["Dense_0"] = dense_init(next(k), d, vocab)
    return p


def transformer(params: Params, tokens: jax.Array) -> jax.Array:
    """The transformer forward pass: token ids (batch, seq) to logits (batch, seq, vocab)."""
    x = jnp.take(params["Embed_0"]["embedding"], tokens, axis=0) + params["pos_embedding"]
    mask = causal_mask(tokens)
    i = 0
    while f"Block_{i}" in params:
        b = params[f"Block_{i}"]
        x = x + attention(
            b["MultiHeadDotProductAttention_0"], layer_norm(b["LayerNorm_0"], x), mask
        )
        h = jax.nn.gelu(dense(b["Dense_0"], layer_norm(b["LayerNorm_1"], x)))
        x = x + dense(b["Dense_1"], h)
        i += 1
    return dense(params["Dense_0"], layer_norm(params["LayerNorm_0"], x))


def res_block_init(key: jax.Array, width: int) -> Params:
    """Parameters of one residual block."""
    return {"LayerNorm_0": norm_init(width), "Dense_0": dense_init(key, width, width)}


def res_block(p: Params, x: jax.Array) -> jax.Array:
    """x + gelu(Dense(LayerNorm(x)))."""
    return x + jax.nn.gelu(dense(p["Dense_0"], layer_norm(p["LayerNorm_0"], x)))


def block_stack_init(key: jax.Array, depth: int, width: int, out: int, scan: bool) -> Params:
    """Parameters of the block stack: ResBlock_i dicts, or one 'blocks' dict stacked on axis 0."""
    keys = jax.random.split(key, depth + 1)
    if scan:
        blocks = jax.vmap(lambda k: res_block_init(k, width))(keys[:depth])
        return {"blocks": blocks, "Dense_0": dense_init(keys[depth], width, out)}
    p = {f"ResBlock_{i}": res_block_init(keys[i], width) for i in range(depth)}
    p["Dense_0"] = dense_init(keys[depth], width, out)
    return p


def block_stack(params: Params, x: jax.Array) -> jax.Array:
    """The block stack forward pass, through `lax.scan` when the blocks are stacked."""
    if "blocks" in params:
        x, _ = lax.scan(lambda h, p: (res_block(p, h), None), x, params["blocks"])
    else:
        for i in range(len(params) - 1):
            x = res_block(params[f"ResBlock_{i}"], x)
    return dense(params["Dense_0"], x)


def as_dicts(tree: Any) -> Any:
    """A copy of a variable tree with every mapping (FrozenDict included) as a plain dict."""
    if hasattr(tree, "items"):
        return {k: as_dicts(v) for k, v in tree.items()}
    return tree


def tree_bytes(tree: Any) -> int:
    """Total bytes of the array leaves of a tree."""
    return sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(tree))
