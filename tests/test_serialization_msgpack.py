"""The msgpack wire format: every leaf type, chunking, and hostile bytes."""

from __future__ import annotations

import struct

import jax.numpy as jnp
import ml_dtypes
import msgpack
import numpy as np
import pytest
from decode_cost import STEPS_PER_BYTE, WORST_PEAK_PER_BYTE, check_bounded, cost

import minilinen.serialization.encode as encode
from minilinen import serialization
from minilinen.errors import CorruptDataError, SerializationError, SerializationTypeError

LEAVES = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
    "bf16": jnp.arange(4, dtype=jnp.bfloat16),
    "fp8": np.ones(3, ml_dtypes.float8_e5m2),
    "int4": np.array([-3, 2], ml_dtypes.int4),
    "c64": np.array([1 + 2j], np.complex64),
    "zero_d": np.array(2.5),
    "empty": np.zeros((3, 0, 2), np.int16),
    "bool": np.array([True, False]),
    "dt": np.array(["2024-01-02"], "datetime64[D]"),
    "text": np.array(["ab", "c"]),
    "np_scalar": np.int16(-7),
    "bf16_scalar": ml_dtypes.bfloat16(0.25),
    "complex": 3 - 1j,
    "int": -(2**40),
    "float": 1e-300,
    "none": None,
    "str": "\u00fcnicode",
    "bytes": b"\x00\x01",
    "list": [1, [2.0, None]],
    "bool_py": False,
}


def test_every_leaf_round_trips_with_its_type_and_dtype():
    back = serialization.msgpack_restore(serialization.msgpack_serialize(LEAVES))
    assert list(back) == sorted(LEAVES)
    for key, want in LEAVES.items():
        got = back[key]
        if isinstance(want, (np.ndarray, type(jnp.ones(1)))):
            assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, np.asarray(want))
        else:
            assert type(got) is type(want) and got == want


def test_restored_arrays_are_one_aligned_writable_copy():
    arr = np.arange(5, dtype=np.float64)
    data = bytearray(serialization.to_bytes({"x": np.int8(1), "a": arr}))
    restored = serialization.msgpack_restore(data)["a"]
    assert restored.flags.writeable and restored.flags.aligned and restored.flags.c_contiguous
    data[-8:] = b"\xff" * 8  # the input buffer is no longer referenced
    np.testing.assert_array_equal(restored, arr)


def test_writer_does_not_copy_array_memory():
    arr = np.arange(1000, dtype=np.float32)
    pieces = encode.serialize_pieces({"a": arr})
    assert any(np.shares_memory(p, arr) for p in pieces if isinstance(p, np.ndarray))


def test_foreign_byte_order_is_written_as_native():
    big_endian = np.arange(3, dtype=">f4")
    back = serialization.msgpack_restore(serialization.to_bytes({"a": big_endian}))["a"]
    np.testing.assert_array_equal(back, [0.0, 1.0, 2.0])
    assert serialization.to_bytes({"a": big_endian}) == serialization.to_bytes(
        {"a": big_endian.astype("<f4")}
    )


@pytest.mark.parametrize(
    "leaf",
    [{1, 2}, np.array([1, None], object), np.zeros(2, "i4,f4"), np.zeros(2, "V4"), object()],
    ids=["set", "object", "structured", "void", "object_instance"],
)
def test_unstorable_leaves_raise_a_named_type_error(leaf):
    with pytest.raises(SerializationTypeError):
        serialization.to_bytes({"a": leaf})


def test_strict_types_as_in_flax():
    # Flax's packer refuses tuples and dict subclasses given to msgpack_serialize
    # directly (to_bytes turns them into dicts first).
    with pytest.raises(SerializationTypeError):
        serialization.msgpack_serialize({"a": (1, 2)})
    assert serialization.msgpack_restore(serialization.to_bytes({"a": (1, 2)})) == {
        "a": {"0": 1, "1": 2}
    }


def test_integer_beyond_64_bits_is_a_named_error():
    with pytest.raises(SerializationError, match="64 bits"):
        serialization.to_bytes({"a": 2**64})


def test_unsortable_keys_need_in_place():
    with pytest.raises(SerializationTypeError, match="in_place=True"):
        serialization.msgpack_serialize({"a": 1, 2: 3})
    assert serialization.msgpack_restore(
        serialization.msgpack_serialize({"a": 1, 2: 3}, in_place=True)
    ) == {"a": 1, 2: 3}


def test_writing_a_too_deep_tree_is_a_named_error():
    tree: list = []
    for _ in range(encode.MAX_DEPTH + 5):
        tree = [tree]
    with pytest.raises(SerializationError, match="deeper"):
        serialization.msgpack_serialize(tree)


# --- chunking, with our own limit lowered (Flax's output for the same limit is in
# golden/serialization/chunked_arrays.msgpack) ----------------------------------------


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(encode, "MAX_CHUNK_SIZE", 16)


def test_chunked_layout(small_chunks):
    arr = np.arange(10, dtype=np.int32).reshape(2, 5)
    raw = msgpack.unpackb(serialization.to_bytes({"a": arr}), raw=False)
    chunked = raw["a"]
    assert list(chunked) == ["__msgpack_chunked_array__", "shape", "chunks"]
    assert chunked["__msgpack_chunked_array__"] is True
    assert chunked["shape"] == {"0": 2, "1": 5}
    sizes = [msgpack.unpackb(c.data)[0] for c in chunked["chunks"].values()]
    assert list(chunked["chunks"]) == ["0", "1", "2"] and sizes == [[4], [4], [2]]


def test_chunked_round_trip(small_chunks):
    tree = {
        "big": np.arange(37, dtype=np.float32),
        "inner": {"c": jnp.arange(12.0).reshape(3, 4)},
        "wide": np.arange(3, dtype=np.complex128),  # one item per chunk (16 bytes)
        "at_limit": np.arange(4, dtype=np.int32),
        "scalar": np.complex128(5),
    }
    data = serialization.to_bytes(tree)
    raw = msgpack.unpackb(data, raw=False)
    assert "__msgpack_chunked_array__" in raw["big"] and "__msgpack_chunked_array__" in raw["wide"]
    assert isinstance(raw["at_limit"], msgpack.ExtType) and isinstance(
        raw["scalar"], msgpack.ExtType
    )
    back = serialization.from_bytes(tree, data)
    for key in ("big", "wide", "at_limit"):
        np.testing.assert_array_equal(back[key], tree[key])
    np.testing.assert_array_equal(back["inner"]["c"], np.arange(12.0).reshape(3, 4))


def test_top_level_array_is_chunked_but_list_items_are_not(small_chunks):
    arr = np.arange(9, dtype=np.int16)
    raw = msgpack.unpackb(serialization.msgpack_serialize(arr), raw=False)
    assert raw["shape"] == {"0": 9}
    raw = msgpack.unpackb(serialization.msgpack_serialize({"l": [arr]}), raw=False)
    assert isinstance(raw["l"][0], msgpack.ExtType)
    np.testing.assert_array_equal(
        serialization.msgpack_restore(serialization.msgpack_serialize(arr)), arr
    )


# --- hostile and corrupt bytes ---------------------------------------------------------


def ext(code: int, payload: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, payload))


def ndarray_ext(shape, dtype_name, data: bytes) -> bytes:
    return ext(1, msgpack.packb([shape, dtype_name, data], use_bin_type=True))


def nested_arrays(levels: int) -> bytes:
    """Arrays whose shape is an array, ``levels`` deep: the most stack per byte of input."""
    data = b"\x00"
    for _ in range(levels):
        data = ext(1, b"\x93" + data)
    return data


def nested_lists_claiming_all_bytes_left(levels: int, tail: bytes) -> bytes:
    """array32 headers, each claiming one item per byte after it. A reader that allocates
    a list by its header, as ``msgpack.unpackb`` does, holds levels x len(data) slots."""
    data = tail
    for _ in range(levels):
        data = b"\xdd" + struct.pack(">I", len(data)) + data
    return data


GOOD = serialization.to_bytes(
    {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float32(2)}, "c": 1j}
)

HOSTILE = {
    "empty": b"",
    "never_used_byte": b"\xc1",
    "trailing_data": GOOD + b"\x00",
    "bad_utf8": b"\xa2\xff\xfe",
    "list_as_key": b"\x81\x90\x01",
    "unknown_ext": ext(9, b"xx"),
    "ext_not_a_tuple": ext(1, b"\x01\x02"),
    "ext_two_items": ext(1, msgpack.packb([[1], "float32"])),
    "shape_vs_buffer": ndarray_ext([10], "float32", b"\x00" * 4),
    "buffer_too_long": ndarray_ext([1], "float32", b"\x00" * 8),
    "object_dtype": ndarray_ext([1], "object", b"\x00" * 8),
    "object_in_struct": ndarray_ext([1], "i8,O", b"\x00" * 16),
    "void_dtype": ndarray_ext([1], "void64", b"\x00" * 8),
    "dtype_not_str": ndarray_ext([1], 5, b"\x00"),
    "absurd_shape": ndarray_ext([2**62, 2**62], "float32", b""),
    "zero_times_absurd": ndarray_ext([0, 2**63], "float32", b""),
    "negative_dim": ndarray_ext([-1], "float32", b""),
    "bool_dim": ndarray_ext([True], "bool", b"\x01"),
    "too_many_dims": ndarray_ext([1] * 65, "int8", b"\x00"),
    "shape_not_list": ndarray_ext(3, "int8", b"\x00\x00\x00"),
    "data_not_bin": ext(1, msgpack.packb([[1], "int8", "x"], use_bin_type=True)),
    "extra_in_ext": ext(1, msgpack.packb([[1], "int8", b"\x00"], use_bin_type=True) + b"\x00"),
    "bool_byte_2": ndarray_ext([2], "bool", b"\x01\x02"),
    "scalar_with_shape": ext(3, msgpack.packb([[2], "int8", b"\x00\x00"], use_bin_type=True)),
    "complex_not_pair": ext(2, msgpack.packb([1.0])),
    "complex_of_strings": ext(2, msgpack.packb(["1", "2"])),
    "huge_array32": b"\xdd\xff\xff\xff\xff",
    "huge_map32": b"\xdf\xff\xff\xff\xff\x01",
    "huge_str32": b"\xdb\xff\xff\xff\xff",
    "huge_bin32": b"\xc6\xff\xff\xff\xff" + b"\x00" * 100,
    "huge_ext32": b"\xc9\xff\xff\xff\xff\x01",
    "deep_lists": b"\x91" * 100_000,
    "deep_maps": b"\x81\xa1a" * 100_000,
    "nested_list_claims": nested_lists_claiming_all_bytes_left(100, b"\x00" * 4000),
    "deep_short_lists": b"\x91" * 300,
    "deep_arrays": nested_arrays(300),
    "chunk_bad_keys": msgpack.packb({"__msgpack_chunked_array__": True, "shape": {}}),
    "chunk_wrong_size": msgpack.packb(
        {"__msgpack_chunked_array__": True, "shape": {"0": 5}, "chunks": {"0": 1}}
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bytes_raise_corrupt_data_error(name):
    data = HOSTILE[name]
    with pytest.raises(CorruptDataError):
        serialization.msgpack_restore(data)
    with pytest.raises(CorruptDataError):
        serialization.from_bytes({"params": {"w": np.zeros(1)}}, data)
    # Nothing sized by a header: steps and memory stay within a small multiple of the input
    # (counted, not timed: see decode_cost.py).
    check_bounded(serialization.msgpack_restore, data, CorruptDataError)
    check_bounded(
        lambda d: serialization.from_bytes({"params": {"w": np.zeros(1)}}, d),
        data,
        CorruptDataError,
    )


# Inputs that make the most Python objects per byte, and so cost the most to read.
WORST = {
    "empty_maps": b"\x80",
    "empty_lists": b"\x90",
    "empty_strings": b"\xa0",
    "nils": b"\xc0",
    "fixints": b"\x01",
    "empty_bins": b"\xc4\x00",
}


@pytest.mark.parametrize("name", sorted(WORST))
def test_worst_case_inputs_cost_linear_in_their_size(name):
    """A list of 4096 of the smallest values: valid, and read at a cost per byte that
    decode_cost.py's bounds hold exactly, for this length and any other."""
    item = WORST[name]
    data = b"\xdc" + struct.pack(">H", 4096) + item * 4096
    assert len(serialization.msgpack_restore(data)) == 4096
    steps, peak = cost(serialization.msgpack_restore, data, CorruptDataError)
    assert steps <= STEPS_PER_BYTE * len(data), steps / len(data)
    assert peak <= WORST_PEAK_PER_BYTE * len(data), peak / len(data)


def test_every_truncation_of_valid_bytes_is_rejected():
    for end in range(len(GOOD)):
        with pytest.raises(CorruptDataError):
            serialization.msgpack_restore(GOOD[:end])


def test_corrupt_data_error_is_a_value_error():
    assert issubclass(CorruptDataError, ValueError)


def test_non_bytes_input_is_a_named_type_error():
    with pytest.raises(SerializationTypeError):
        serialization.msgpack_restore("not bytes")


def test_accepts_any_bytes_like_input():
    expect = serialization.msgpack_restore(GOOD)
    for data in (bytearray(GOOD), memoryview(GOOD), np.frombuffer(GOOD, np.uint8)):
        back = serialization.msgpack_restore(data)
        np.testing.assert_array_equal(back["params"]["w"], expect["params"]["w"])


def test_reader_handles_every_msgpack_encoding_of_plain_values():
    # Encodings Flax's writer never makes but other msgpack writers do.
    values = [2**64 - 1, -(2**63), 255, -33, 1.5, "x" * 70000, b"y" * 300, list(range(70000))]
    for value in values:
        assert serialization.msgpack_restore(msgpack.packb(value, use_bin_type=True)) == value
    single = msgpack.packb(0.25, use_single_float=True)
    assert single[0] == 0xCA and serialization.msgpack_restore(single) == 0.25
    big_map = {str(i): i for i in range(70000)}
    assert serialization.msgpack_restore(msgpack.packb(big_map)) == big_map
    header = struct.pack(">BI", 0xDD, 2) + b"\x01\x02"  # array32 of two items
    assert serialization.msgpack_restore(header) == [1, 2]
