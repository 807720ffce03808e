"""Fuzzing the reader: mutated and random bytes give a named error, at a bounded cost.

The cost is counted (Python steps and peak memory, see decode_cost.py), so the verdict
does not depend on the machine's speed or load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from decode_cost import check_bounded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minilinen import serialization
from minilinen.errors import CorruptDataError, SerializationError

GOLDEN = Path(__file__).parent / "golden" / "serialization"
SEEDS = [
    serialization.to_bytes(
        {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.int8(3), "c": 1j, "l": [1]}
    ),
    (GOLDEN / "train_state_adam.msgpack").read_bytes(),
    (GOLDEN / "chunked_arrays.msgpack").read_bytes(),
    (GOLDEN / "scalars.msgpack").read_bytes(),
]
TEMPLATE = {"w": np.zeros((2, 3), np.float32), "s": np.int8(0), "c": 0j, "l": [0]}


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xC1, 0xC6, 0xDD, 0xDF, 0xFF]))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 8))]
        else:
            del data[i:]
    return bytes(data)


FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@FUZZ
@given(mutated())
def test_mutated_bytes_msgpack_restore(data):
    check_bounded(serialization.msgpack_restore, data, CorruptDataError)


@FUZZ
@given(mutated())
def test_mutated_bytes_from_bytes(data):
    # A mutation can decode fine yet no longer fit the template: that too is named.
    check_bounded(lambda d: serialization.from_bytes(TEMPLATE, d), data, SerializationError)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data):
    check_bounded(serialization.msgpack_restore, data, CorruptDataError)
    check_bounded(lambda d: serialization.from_bytes(TEMPLATE, d), data, SerializationError)
