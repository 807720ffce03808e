"""minilinen writes Flax's bytes, byte for byte, and reads what Flax wrote.

The golden bytes were written by the real Flax (``golden/make_golden_serialization.py``,
which also checked that Flax's ``from_bytes`` reads minilinen's bytes); the trees
are rebuilt here from the same recipe with minilinen's TrainState and ``freeze``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from golden.serialization_cases import (
    CHUNKED_CASES,
    CHUNKED_MAX_CHUNK_SIZE,
    MSGPACK_SERIALIZE_CASES,
    make_cases,
)

import minilinen.serialization.encode as encode
from minilinen import serialization
from minilinen.core import FrozenDict, freeze
from minilinen.training.train_state import TrainState

GOLDEN = Path(__file__).parent / "golden" / "serialization"
CASES = make_cases(TrainState, freeze)


def golden_bytes(name: str) -> bytes:
    return (GOLDEN / f"{name}.msgpack").read_bytes()


def assert_same_tree(actual, expected) -> None:
    """Same structure, same leaf types (NumPy for arrays), same values and dtypes."""
    a_leaves, a_def = jax.tree_util.tree_flatten(actual)
    e_leaves, e_def = jax.tree_util.tree_flatten(expected)
    assert a_def == e_def
    for a, e in zip(a_leaves, e_leaves):
        if isinstance(e, (np.ndarray, jax.Array)):
            assert type(a) is np.ndarray
            assert a.dtype == e.dtype and a.shape == e.shape
            np.testing.assert_array_equal(a, np.asarray(e))
        else:
            assert type(a) is type(e) and (a == e or (a != a and e != e)), (a, e)


@pytest.fixture
def chunk_size(request, monkeypatch):
    if request.param in CHUNKED_CASES:
        monkeypatch.setattr(encode, "MAX_CHUNK_SIZE", CHUNKED_MAX_CHUNK_SIZE)
    return request.param


@pytest.mark.parametrize("chunk_size", sorted(CASES), indirect=True)
def test_bytes_equal_flax(chunk_size):
    name = chunk_size
    if name in MSGPACK_SERIALIZE_CASES:
        data = serialization.msgpack_serialize(CASES[name])
    else:
        data = serialization.to_bytes(CASES[name])
    assert data == golden_bytes(name)


@pytest.mark.parametrize("name", sorted(set(CASES) - set(MSGPACK_SERIALIZE_CASES)))
def test_reads_flax_bytes(name):
    template = CASES[name]
    restored = serialization.from_bytes(template, golden_bytes(name))
    assert type(restored) is type(template)
    assert_same_tree(restored, template)


def test_chunked_golden_has_chunks_and_restores_without_lowering_the_limit():
    raw = serialization.msgpack_restore(golden_bytes("chunked_arrays"))
    # Reading needs no knowledge of the writer's chunk size.
    np.testing.assert_array_equal(raw["big"], np.arange(50, dtype=np.float32).reshape(5, 10))
    assert raw["nested"]["also_big"].dtype == np.int32
    np.testing.assert_array_equal(raw["in_list"]["0"], np.arange(40, dtype=np.int16))
    # The golden really is chunked: the writer's default limit gives other bytes.
    assert serialization.to_bytes(CASES["chunked_arrays"]) != golden_bytes("chunked_arrays")


def test_train_state_golden_restores_into_a_fresh_state():
    state = CASES["train_state_adam"]
    fresh = TrainState.create(apply_fn=None, params=state.params, tx=state.tx)
    restored = serialization.from_bytes(fresh, golden_bytes("train_state_adam"))
    assert restored.step == 2
    assert isinstance(restored.params, FrozenDict)
    assert_same_tree(restored.opt_state, state.opt_state)
    raw = serialization.msgpack_restore(golden_bytes("train_state_adam"))
    assert list(raw) == ["step", "params", "opt_state"]
    assert list(raw["opt_state"]["0"]) == ["count", "mu", "nu"]


def test_msgpack_serialize_sorts_keys_but_to_bytes_keeps_order():
    raw = serialization.msgpack_restore(golden_bytes("msgpack_serialize_sorted"))
    assert list(raw) == ["alpha", "mid", "zeta"] and list(raw["zeta"]) == ["a", "b"]
    tree = CASES["msgpack_serialize_sorted"]
    in_order = serialization.msgpack_serialize(tree, in_place=True)
    assert list(serialization.msgpack_restore(in_order)) == ["zeta", "alpha", "mid"]


def seed004_printed() -> FrozenDict:
    values = json.loads((GOLDEN / "seed004.json").read_text())
    arrays = {k: np.array(ast.literal_eval(v), np.float32) for k, v in values.items()}
    return freeze({"params": {"bias": arrays["bias"], "kernel": arrays["kernel"]}})


def test_seed004_bytes():
    """Seed 004 prints a tree's state dict and its bytes: both directions agree."""
    seed_bytes = golden_bytes("seed004")
    printed = seed004_printed()
    restored = serialization.from_bytes(printed, seed_bytes)
    assert isinstance(restored, FrozenDict)
    for got, want in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(printed)):
        # The seed prints 8 significant digits.
        np.testing.assert_allclose(got, want, rtol=2.5e-7)
    assert serialization.to_bytes(restored) == seed_bytes
    assert serialization.to_bytes(serialization.to_state_dict(restored)) == seed_bytes
    assert serialization.msgpack_serialize(serialization.to_state_dict(restored)) == seed_bytes
