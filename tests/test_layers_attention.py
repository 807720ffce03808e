"""Attention: the decode cache against one causal pass, masks, sown weights, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minilinen as nn
from minilinen.errors import LayerInputError, MergeParamError, NumHeadsError, ParamShapeError


def data(*shape, seed=0):
    return jnp.asarray(np.random.RandomState(seed).standard_normal(shape), jnp.float32)


@pytest.mark.parametrize("qkv_features", [None, 6])
def test_decode_step_by_step_equals_one_causal_pass(qkv_features):
    b, length, f = 2, 5, 4
    x = data(b, length, f)
    full = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=qkv_features)
    dec = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=qkv_features, decode=True)
    params = full.init(jax.random.key(0), x)["params"]
    causal = full.apply({"params": params}, x, mask=nn.make_causal_mask(jnp.ones((b, length))))

    # Initializing with the whole sequence sizes the cache (and makes the same params).
    variables = dec.init(jax.random.key(0), x)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, variables["params"], params))
    cache = variables["cache"]
    assert cache["cached_key"].shape == (b, length, 2, (qkv_features or f) // 2)

    @jax.jit
    def step(cache, token):
        return dec.apply({"params": params, "cache": cache}, token, mutable=["cache"])

    outs = []
    for t in range(length):
        y, updated = step(cache, x[:, t : t + 1])
        cache = updated["cache"]
        outs.append(y)
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), causal, rtol=1e-5, atol=1e-6)
    assert int(cache["cache_index"]) == length


def test_decode_rejects_more_than_one_token_per_step():
    x = data(1, 4, 4)
    dec = nn.MultiHeadDotProductAttention(num_heads=1, decode=True)
    variables = dec.init(jax.random.key(0), x)
    with pytest.raises(LayerInputError, match="one token per call"):
        dec.apply(variables, x[:, :2], mutable=["cache"])


def test_dot_product_attention_equals_softmax_formula():
    q, k, v = data(2, 3, 2, 4, seed=1), data(2, 5, 2, 4, seed=2), data(2, 5, 2, 4, seed=3)
    mask = jnp.asarray(np.random.RandomState(4).rand(2, 1, 3, 5) > 0.3)
    out = nn.dot_product_attention(q, k, v, mask=mask)

    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / 2.0
    logits = np.where(mask, logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    np.testing.assert_allclose(out, np.einsum("bhqk,bkhd->bqhd", w, v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "q_shape, kv_shape",
    [((3, 4), (3, 4)), ((2, 3, 2, 4), (2, 5, 3, 4)), ((2, 3, 2, 4), (1, 5, 2, 4))],
)
def test_attention_rejects_misshaped_inputs_with_a_named_error(q_shape, kv_shape):
    q, kv = jnp.ones(q_shape), jnp.ones(kv_shape)
    with pytest.raises(LayerInputError, match=r"\[\.\.\., length, heads, depth\]"):
        nn.dot_product_attention(q, kv, kv)
    with pytest.raises(LayerInputError, match="query, key"):
        nn.dot_product_attention_weights(q, kv)
    with pytest.raises(AssertionError):  # what Flax raises here, for `except` clauses
        nn.dot_product_attention(q, kv, kv)


def test_heads_that_do_not_divide_the_features_raise_what_flax_raises():
    mha = nn.MultiHeadDotProductAttention(num_heads=3, qkv_features=4)
    with pytest.raises(NumHeadsError, match="divisible") as raised:
        mha.init(jax.random.key(0), jnp.ones((1, 2, 4)))
    assert isinstance(raised.value, AssertionError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize("x64", [False, True])
def test_query_scaling_is_flax_jnp_sqrt_of_depth_in_the_default_float(x64):
    with jax.enable_x64(x64):
        q, k = data(1, 2, 1, 3, seed=1), data(1, 4, 1, 3, seed=2)
        if x64:
            q, k = q.astype(jnp.float64), k.astype(jnp.float64)
        got = nn.dot_product_attention_weights(q, k)
        # Flax's formula, on the device: depth's sqrt in the default float, cast to q's dtype.
        scaled = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
        want = jax.nn.softmax(jnp.einsum("...qhd,...khd->...hqk", scaled, k))
        assert got.dtype == q.dtype
        np.testing.assert_array_equal(got, want)


def test_sow_weights_stores_attention_weights():
    x = data(2, 3, 4)
    mha = nn.MultiHeadDotProductAttention(num_heads=2)
    variables = mha.init(jax.random.key(0), x)
    _, state = mha.apply(variables, x, sow_weights=True, mutable=["intermediates"])
    (w,) = state["intermediates"]["attention_weights"]
    assert w.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(w.sum(-1), np.ones((2, 2, 3)), rtol=1e-6)


def test_custom_attention_fn_gets_only_the_arguments_it_takes():
    seen = {}

    def attend(query, key, value, mask=None):
        seen["mask"] = mask
        return nn.dot_product_attention(query, key, value, mask=mask)

    x = data(1, 3, 4)
    mask = nn.make_causal_mask(jnp.ones((1, 3)))
    mha = nn.MultiHeadDotProductAttention(num_heads=2, attention_fn=attend)
    variables = mha.init(jax.random.key(0), x, mask=mask)
    y = mha.apply(variables, x, mask=mask)
    want = nn.MultiHeadDotProductAttention(num_heads=2).apply(variables, x, mask=mask)
    np.testing.assert_array_equal(y, want)
    assert seen["mask"] is mask


def test_custom_attention_fn_with_var_keywords_gets_no_keywords_as_in_flax():
    seen = []

    def attend(query, key, value, **kwargs):
        seen.append(kwargs)
        return nn.dot_product_attention(query, key, value)

    x = data(1, 3, 4)
    mha = nn.MultiHeadDotProductAttention(num_heads=2, attention_fn=attend, dropout_rate=0.5)
    mha.init(jax.random.key(0), x, mask=nn.make_causal_mask(jnp.ones((1, 3))), deterministic=True)
    # Flax filters by the names in the signature, which a **kwargs catch-all never matches.
    assert seen == [{}]


def test_dropout_needs_deterministic_and_a_dropout_rng():
    x = data(1, 3, 4)
    mha = nn.MultiHeadDotProductAttention(num_heads=2, dropout_rate=0.5)
    with pytest.raises(MergeParamError, match="deterministic"):
        mha.init(jax.random.key(0), x)
    variables = mha.init(jax.random.key(0), x, deterministic=True)
    a = mha.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    b = mha.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
    c = mha.apply(variables, x, deterministic=True)
    assert not np.allclose(a, b)
    assert not np.allclose(a, c)


def test_masks_combine_with_logical_and():
    causal = nn.make_causal_mask(jnp.ones((1, 3)))
    padding = nn.make_attention_mask(jnp.ones((1, 3)), jnp.asarray([[1, 1, 0]]))
    both = nn.combine_masks(causal, None, padding)
    want = np.tril(np.ones((3, 3))) * np.array([1, 1, 0])
    np.testing.assert_array_equal(both[0, 0], want)
    assert nn.combine_masks(None, None) is None
    with pytest.raises(LayerInputError, match="one rank"):
        nn.combine_masks(causal, causal[0])
    with pytest.raises(AssertionError):
        nn.combine_masks(causal, causal[0])


def test_old_call_signatures_warn_as_flax_does():
    x = jnp.ones((1, 4, 2))
    mha = nn.MultiHeadDotProductAttention(num_heads=1)
    variables = mha.init(jax.random.key(0), x)
    with pytest.warns(DeprecationWarning, match="inputs_kv"):
        mha.apply(variables, x, inputs_kv=x)
    # A square inputs_v is most likely a mask given positionally (the pre-0.7.4 order).
    mask = nn.make_causal_mask(jnp.ones((1, 4)))
    with pytest.warns(DeprecationWarning, match="mask=") as record:
        with pytest.raises(ParamShapeError):
            mha.apply(variables, x, x, mask)
    assert len(record) == 1
