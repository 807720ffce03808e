"""Golden cases: attention, recurrent, stochastic."""

from __future__ import annotations

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np

from .base import Case, case, data, inits, key

# --- attention --------------------------------------------------------------


def _qkv(seed: int, b: int = 2, q: int = 3, k: int = 4, h: int = 2, d: int = 3):
    return (
        data(b, q, h, d, seed=seed),
        data(b, k, h, d, seed=seed + 1),
        data(b, k, h, d, seed=seed + 2),
    )


@case
def attention_dpa_plain(nn):
    return Case(fn=nn.dot_product_attention, args=_qkv(0))


@case
def attention_dpa_mask_bias(nn):
    q, k, v = _qkv(3)
    mask = jnp.asarray(np.random.RandomState(9).rand(2, 1, 3, 4) > 0.3)
    bias = data(2, 2, 3, 4, seed=10)
    return Case(
        fn=functools.partial(nn.dot_product_attention, bias=bias, mask=mask), args=(q, k, v)
    )


@case
def attention_dpa_dropout(nn):
    q, k, v = _qkv(6)
    f = functools.partial(nn.dot_product_attention, dropout_rng=key(5), dropout_rate=0.5)
    return Case(fn=f, args=(q, k, v))


@case
def attention_dpa_dropout_unbroadcast_bf16(nn):
    q, k, v = _qkv(9)
    f = functools.partial(
        nn.dot_product_attention,
        dropout_rng=key(6),
        dropout_rate=0.3,
        broadcast_dropout=False,
        dtype=jnp.bfloat16,
    )
    return Case(fn=f, args=(q, k, v))


@case
def attention_weights_plain(nn):
    q, k, _ = _qkv(12)
    return Case(fn=nn.dot_product_attention_weights, args=(q, k))


@case
def attention_weights_mask(nn):
    q, k, _ = _qkv(15)
    mask = jnp.asarray(np.random.RandomState(1).rand(2, 2, 3, 4) > 0.5)
    return Case(fn=functools.partial(nn.dot_product_attention_weights, mask=mask), args=(q, k))


@case
def attention_weights_dropout_fp32_softmax(nn):
    q, k, _ = _qkv(18)
    f = functools.partial(
        nn.dot_product_attention_weights,
        dropout_rng=key(7),
        dropout_rate=0.25,
        dtype=jnp.bfloat16,
        force_fp32_for_softmax=True,
    )
    return Case(fn=f, args=(q, k))


@case
def attention_mha_self(nn):
    return Case(nn.MultiHeadDotProductAttention(num_heads=2), (data(2, 3, 4),), key(0))


@case
def attention_mha_cross_mask(nn):
    m = nn.MultiHeadDotProductAttention(
        num_heads=2, qkv_features=8, out_features=5, bias_init=inits.normal(0.5)
    )
    q, kv = data(2, 3, 4, seed=1), data(2, 5, 6, seed=2)
    mask = nn.make_attention_mask(
        jnp.ones((2, 3)), jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1.0]])
    )
    return Case(m, (q, kv), key(1), init_kwargs={"mask": mask}, apply_kwargs={"mask": mask})


@case
def attention_mha_kv_separate_dropout(nn):
    m = nn.MultiHeadDotProductAttention(num_heads=1, dropout_rate=0.5, deterministic=False)
    q, k, v = data(1, 2, 3, seed=3), data(1, 4, 3, seed=4), data(1, 4, 3, seed=5)
    rngs = {"params": key(2), "dropout": key(3)}
    return Case(m, (q, k, v), rngs, apply_kwargs={"rngs": {"dropout": key(4)}})


@case
def attention_mha_normalize_qk_nobias_sow(nn):
    m = nn.MultiHeadDotProductAttention(num_heads=2, normalize_qk=True, use_bias=False)
    x = data(2, 3, 4, seed=6)
    return Case(
        m,
        (x,),
        key(5),
        apply_kwargs={"sow_weights": True, "mutable": ["intermediates"]},
    )


@case
def attention_mha_bf16_out_init(nn):
    m = nn.MultiHeadDotProductAttention(
        num_heads=2,
        dtype=jnp.bfloat16,
        out_kernel_init=inits.normal(0.2),
        out_bias_init=inits.normal(1.0),
    )
    return Case(m, (data(1, 3, 4, seed=7),), key(6))


@case
def attention_mha_decode_step(nn):
    m = nn.MultiHeadDotProductAttention(num_heads=2, decode=True)
    return Case(
        m,
        (data(2, 4, 4, seed=8),),
        key(7),
        apply_args=(data(2, 1, 4, seed=9),),
        apply_kwargs={"mutable": ["cache"]},
    )


@case
def attention_selfattention_basic(nn):
    return Case(nn.SelfAttention(num_heads=2), (data(2, 3, 4, seed=10),), key(8))


@case
def attention_selfattention_causal(nn):
    x = data(2, 4, 6, seed=11)
    mask = nn.make_causal_mask(jnp.ones((2, 4)))
    m = nn.SelfAttention(num_heads=3, qkv_features=6)
    return Case(m, (x, mask), key(9))


@case
def attention_selfattention_dropout(nn):
    m = nn.SelfAttention(num_heads=1, dropout_rate=0.4, broadcast_dropout=False)
    x = data(1, 3, 2, seed=12)
    return Case(
        m,
        (x,),
        key(10),
        init_kwargs={"deterministic": True},
        apply_kwargs={"deterministic": False, "rngs": {"dropout": key(11)}},
    )


@case
def attention_make_attention_mask(nn):
    q = jnp.asarray([[1, 1, 0], [1, 0, 0]])
    k = jnp.asarray([[1, 1, 1, 0], [1, 1, 0, 0]])
    return Case(fn=nn.make_attention_mask, args=(q, k))


@case
def attention_make_attention_mask_greater_extra(nn):
    q = jnp.asarray([[0, 1, 2]])
    k = jnp.asarray([[0, 1, 2, 3]])
    f = functools.partial(
        nn.make_attention_mask, pairwise_fn=jnp.greater, extra_batch_dims=1, dtype=jnp.int32
    )
    return Case(fn=f, args=(q, k))


@case
def attention_make_attention_mask_bool(nn):
    q = jnp.asarray([1.0, 0.0])
    k = jnp.asarray([1.0, 1.0, 0.0])
    return Case(fn=functools.partial(nn.make_attention_mask, dtype=jnp.bool_), args=(q, k))


@case
def attention_make_causal_mask(nn):
    return Case(fn=nn.make_causal_mask, args=(jnp.ones((2, 4)),))


@case
def attention_make_causal_mask_extra_bool(nn):
    f = functools.partial(nn.make_causal_mask, extra_batch_dims=2, dtype=jnp.bool_)
    return Case(fn=f, args=(jnp.ones((3,)),))


@case
def attention_make_causal_mask_3d(nn):
    return Case(fn=nn.make_causal_mask, args=(jnp.ones((2, 1, 3)),))


@case
def attention_combine_masks(nn):
    a = nn.make_causal_mask(jnp.ones((1, 3)))
    b = nn.make_attention_mask(jnp.ones((1, 3)), jnp.asarray([[1, 1, 0]]))
    return Case(fn=nn.combine_masks, args=(a, None, b))


@case
def attention_combine_masks_single_bool(nn):
    a = jnp.asarray([[True, False], [True, True]])
    return Case(fn=functools.partial(nn.combine_masks, dtype=jnp.bool_), args=(a,))


@case
def attention_combine_masks_three(nn):
    r = np.random.RandomState(3)
    a, b, c = (jnp.asarray(r.rand(2, 1, 3, 3) > 0.3) for _ in range(3))
    return Case(fn=nn.combine_masks, args=(a, b, c))


# --- recurrent --------------------------------------------------------------


def _cell_case(nn, cell, x, seed, two=False, carry_seed=None):
    carry = cell.initialize_carry(key(100), x.shape)
    if carry_seed is not None:
        shape = x.shape[:-1] + (cell.features,)
        carry = (
            (data(*shape, seed=carry_seed), data(*shape, seed=carry_seed + 1))
            if two
            else data(*shape, seed=carry_seed)
        )
    return Case(cell, (carry, x), key(seed))


@case
def recurrent_lstm_zero_carry(nn):
    return _cell_case(nn, nn.LSTMCell(3), data(2, 4), 0, two=True)


@case
def recurrent_lstm_carry(nn):
    return _cell_case(
        nn, nn.LSTMCell(2, bias_init=inits.normal(1.0)), data(3, 5, seed=1), 1, True, 2
    )


@case
def recurrent_lstm_custom_gates(nn):
    cell = nn.LSTMCell(4, gate_fn=jax.nn.hard_sigmoid, activation_fn=jax.nn.relu)
    return _cell_case(nn, cell, data(1, 2, 3, seed=3), 2, True, 4)


@case
def recurrent_optimized_lstm_zero_carry(nn):
    return _cell_case(nn, nn.OptimizedLSTMCell(3), data(2, 4), 3, two=True)


@case
def recurrent_optimized_lstm_carry(nn):
    cell = nn.OptimizedLSTMCell(2, bias_init=inits.normal(1.0))
    return _cell_case(nn, cell, data(3, 5, seed=5), 4, True, 6)


@case
def recurrent_optimized_lstm_bf16(nn):
    return _cell_case(
        nn, nn.OptimizedLSTMCell(3, dtype=jnp.bfloat16), data(2, 2, seed=7), 5, True, 8
    )


@case
def recurrent_gru_zero_carry(nn):
    return _cell_case(nn, nn.GRUCell(3), data(2, 4), 6)


@case
def recurrent_gru_carry(nn):
    return _cell_case(
        nn, nn.GRUCell(2, bias_init=inits.normal(1.0)), data(3, 5, seed=9), 7, False, 10
    )


@case
def recurrent_gru_param_f16(nn):
    cell = nn.GRUCell(
        3, param_dtype=jnp.float16, carry_init=inits.ones, recurrent_kernel_init=inits.normal(0.5)
    )
    return _cell_case(nn, cell, data(2, 3, seed=11), 8)


@case
def recurrent_mgu_zero_carry(nn):
    return _cell_case(nn, nn.MGUCell(3), data(2, 4), 20)


@case
def recurrent_mgu_no_reset_gate_carry(nn):
    cell = nn.MGUCell(2, reset_gate=False, activation_bias_init=inits.normal(1.0))
    return _cell_case(nn, cell, data(3, 5, seed=21), 21, False, 22)


@case
def recurrent_mgu_bf16_custom(nn):
    cell = nn.MGUCell(
        3, gate_fn=jax.nn.hard_sigmoid, dtype=jnp.bfloat16, forget_bias_init=inits.normal(0.5)
    )
    return _cell_case(nn, cell, data(1, 2, 3, seed=23), 22, False, 24)


@case
def recurrent_simple_zero_carry(nn):
    return _cell_case(nn, nn.SimpleCell(3), data(2, 4), 9)


@case
def recurrent_simple_residual(nn):
    cell = nn.SimpleCell(3, residual=True, bias_init=inits.normal(1.0))
    return _cell_case(nn, cell, data(2, 3, seed=12), 10, False, 13)


@case
def recurrent_simple_relu(nn):
    return _cell_case(
        nn, nn.SimpleCell(2, activation_fn=jax.nn.relu), data(4, 3, seed=14), 11, False, 15
    )


def _conv_lstm_case(nn, cell, x, seed):
    carry = cell.initialize_carry(key(100), x.shape)
    carry = tuple(data(*c.shape, seed=seed + i) for i, c in enumerate(carry))
    return Case(cell, (carry, x), key(seed))


@case
def recurrent_conv_lstm_1d(nn):
    return _conv_lstm_case(nn, nn.ConvLSTMCell(3, (3,)), data(2, 5, 2, seed=30), 30)


@case
def recurrent_conv_lstm_2d_pair_padding_nobias(nn):
    cell = nn.ConvLSTMCell(2, (2, 2), strides=(1, 1), padding=((0, 1), (1, 0)), use_bias=False)
    return _conv_lstm_case(nn, cell, data(1, 4, 4, 3, seed=31), 31)


@case
def recurrent_conv_lstm_initialized_carry(nn):
    cell = nn.ConvLSTMCell(2, (2,), carry_init=inits.normal(1.0), param_dtype=jnp.float16)
    x = data(3, 2, 5, 2, seed=34)
    return Case(cell, (cell.initialize_carry(key(34), x.shape), x), key(34))


@case
def recurrent_conv_lstm_bf16_in_rnn(nn):
    m = nn.RNN(nn.ConvLSTMCell(2, (3,), dtype=jnp.bfloat16))
    return Case(m, (data(2, 3, 4, 2, seed=33),), key(33))


@case
def recurrent_rnn_lstm(nn):
    return Case(nn.RNN(nn.LSTMCell(3)), (data(2, 5, 4),), key(0))


@case
def recurrent_rnn_gru_time_major_carry(nn):
    m = nn.RNN(nn.GRUCell(2), time_major=True, return_carry=True)
    return Case(m, (data(4, 3, 2, seed=1),), key(1))


@case
def recurrent_rnn_reverse_keep_order(nn):
    m = nn.RNN(nn.SimpleCell(3), reverse=True, keep_order=True)
    return Case(m, (data(2, 4, 3, seed=2),), key(2))


@case
def recurrent_rnn_seq_lengths(nn):
    m = nn.RNN(nn.OptimizedLSTMCell(2), return_carry=True)
    lengths = jnp.asarray([2, 5, 3])
    kw = {"seq_lengths": lengths}
    return Case(m, (data(3, 5, 2, seed=3),), key(3), init_kwargs=kw, apply_kwargs=kw)


@case
def recurrent_rnn_initial_carry_reverse_lengths(nn):
    m = nn.RNN(nn.GRUCell(3), reverse=True)
    carry = data(2, 3, seed=5)
    kw = {"initial_carry": carry, "seq_lengths": jnp.asarray([3, 1])}
    return Case(m, (data(2, 3, 2, seed=4),), key(4), init_kwargs=kw, apply_kwargs=kw)


@case
def recurrent_rnn_mgu(nn):
    return Case(nn.RNN(nn.MGUCell(2)), (data(2, 3, 3, seed=25),), key(25))


@case
def recurrent_rnn_to_bytes(nn):
    # to_bytes of RNN variables: msgpack keeps key order, so the bytes show Flax's order.
    ser = importlib.import_module(nn.__name__.split(".")[0] + ".serialization")

    def fn(x):
        m = nn.Sequential([nn.RNN(nn.LSTMCell(3)), nn.RNN(nn.GRUCell(2))])
        return np.frombuffer(ser.to_bytes(m.init(key(26), x)), np.uint8)

    return Case(fn=fn, args=(data(2, 3, 2, seed=26),))


def _step_cell(nn):
    """A GRU step that drops out its input, sows its output and may count its steps."""

    class StepCell(nn.RNNCellBase):
        features: int
        rate: float = 0.0
        count: bool = False

        @nn.compact
        def __call__(self, carry, x):
            if self.rate:
                x = nn.Dropout(self.rate, deterministic=False)(x)
            carry, y = nn.GRUCell(self.features)(carry, x)
            self.sow("intermediates", "y", y)
            if self.count:
                steps = self.variable("state", "steps", jnp.zeros, (), jnp.int32)
                steps.value += 1
            return carry, y

        @nn.nowrap
        def initialize_carry(self, rng, input_shape):
            return jnp.zeros(tuple(input_shape[:-1]) + (self.features,))

        @property
        def num_feature_axes(self):
            return 1

    return StepCell


@case
def recurrent_rnn_split_dropout_rng(nn):
    # A new dropout mask every step: the 'dropout' stream is split over time.
    m = nn.RNN(_step_cell(nn)(3, rate=0.5), split_rngs={"params": False, "dropout": True})
    rngs = {"params": key(40), "dropout": key(41)}
    return Case(m, (data(2, 4, 3, seed=40),), rngs, apply_kwargs={"rngs": {"dropout": key(42)}})


@case
def recurrent_rnn_scanned_intermediates(nn):
    # Each step's sown value, stacked on axis 1 (the time axis of batch-major inputs).
    m = nn.RNN(_step_cell(nn)(2), variable_axes={"intermediates": 1}, return_carry=True)
    x = data(2, 4, 3, seed=41)
    return Case(m, (x,), key(43), apply_kwargs={"mutable": ["intermediates"]})


@case
def recurrent_rnn_per_step_params(nn):
    # No params shared: each step has its own, drawn from a split 'params' stream.
    m = nn.RNN(
        nn.SimpleCell(2),
        variable_axes={"params": 0},
        variable_broadcast=False,
        split_rngs={"params": True},
    )
    return Case(m, (data(2, 4, 3, seed=42),), key(45))


@case
def recurrent_rnn_unroll_seq_lengths(nn):
    m = nn.RNN(nn.LSTMCell(3), unroll=3, return_carry=True)
    kw = {"seq_lengths": jnp.asarray([2, 5, 4])}
    return Case(m, (data(3, 5, 2, seed=43),), key(44), init_kwargs=kw, apply_kwargs=kw)


@case
def recurrent_rnn_carried_state(nn):
    # A collection carried from step to step; it must exist before the loop (Flax too).
    def fn(x):
        params = nn.RNN(_step_cell(nn)(2)).init(key(46), x)["params"]
        state = {"cell": {"steps": jnp.asarray(3, jnp.int32)}}
        m = nn.RNN(_step_cell(nn)(2, count=True), variable_carry="state")
        return m.apply({"params": params, "state": state}, x, mutable=["state"])

    return Case(fn=fn, args=(data(2, 4, 3, seed=44),))


@case
def recurrent_bidirectional_concat(nn):
    m = nn.Bidirectional(nn.RNN(nn.LSTMCell(3)), nn.RNN(nn.GRUCell(3)))
    return Case(m, (data(2, 4, 2),), key(5))


@case
def recurrent_bidirectional_lengths_carry(nn):
    m = nn.Bidirectional(nn.RNN(nn.SimpleCell(2)), nn.RNN(nn.SimpleCell(2)), return_carry=True)
    kw = {"seq_lengths": jnp.asarray([4, 2])}
    return Case(m, (data(2, 4, 3, seed=6),), key(6), init_kwargs=kw, apply_kwargs=kw)


@case
def recurrent_bidirectional_sum_time_major(nn):
    m = nn.Bidirectional(
        nn.RNN(nn.GRUCell(2)), nn.RNN(nn.GRUCell(2)), merge_fn=jnp.add, time_major=True
    )
    return Case(m, (data(3, 2, 2, seed=7),), key(7))


# --- stochastic -------------------------------------------------------------


@case
def stochastic_dropout_half(nn):
    m = nn.Dropout(0.5, deterministic=False)
    return Case(m, (data(3, 4),), key(0), apply_kwargs={"rngs": {"dropout": key(1)}})


@case
def stochastic_dropout_broadcast(nn):
    m = nn.Dropout(0.3, broadcast_dims=(0, 2))
    x = data(2, 3, 4, seed=1)
    return Case(
        m, (x, True), key(0), apply_args=(x, False), apply_kwargs={"rngs": {"dropout": key(2)}}
    )


@case
def stochastic_dropout_deterministic(nn):
    return Case(
        nn.Dropout(0.5),
        (data(2, 2, seed=2),),
        key(0),
        init_kwargs={"deterministic": True},
        apply_kwargs={"deterministic": True},
    )


@case
def stochastic_dropout_rate_one(nn):
    m = nn.Dropout(1.0, deterministic=False)
    return Case(m, (data(2, 2, seed=3),), key(0), apply_kwargs={"rngs": {"dropout": key(3)}})


@case
def stochastic_dropout_custom_collection(nn):
    m = nn.Dropout(0.25, deterministic=False, rng_collection="noise")
    return Case(
        m,
        (data(5, seed=4),),
        {"params": key(0), "noise": key(4)},
        apply_kwargs={"rngs": {"noise": key(5)}},
    )
