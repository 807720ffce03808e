"""State dicts: what each container becomes, and restoring against a template."""

from __future__ import annotations

import collections
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from minilinen import serialization, struct
from minilinen.core import FrozenDict, freeze
from minilinen.errors import StateDictMismatchError
from minilinen.training.train_state import TrainState

Point = collections.namedtuple("Point", ["x", "y"])


@struct.dataclass
class Pair:
    a: Any
    b: Any
    note: str = struct.field(pytree_node=False, default="static")


def test_containers_become_string_keyed_dicts():
    tree = {1: "a", "b": (1, [2, 3]), "p": Point(4, (5,)), "f": freeze({"g": {"h": 6}})}
    assert serialization.to_state_dict(tree) == {
        "1": "a",
        "b": {"0": 1, "1": {"0": 2, "1": 3}},
        "p": {"x": 4, "y": {"0": 5}},
        "f": {"g": {"h": 6}},
    }
    assert type(serialization.to_state_dict(freeze({"a": {"b": 1}}))["a"]) is dict


def test_leaves_pass_through_unchanged():
    arr = jnp.ones(3)
    for leaf in (arr, np.float32(1), 3, None, "s"):
        assert serialization.to_state_dict(leaf) is leaf


def test_dataclass_keeps_only_pytree_fields():
    assert serialization.to_state_dict(Pair(1, [2])) == {"a": 1, "b": {"0": 2}}
    restored = serialization.from_state_dict(Pair(0, [0], note="kept"), {"a": 5, "b": {"0": 6}})
    assert restored == Pair(5, [6], note="kept")


def test_train_state_fields_in_flax_order():
    state = TrainState.create(apply_fn=None, params={"w": jnp.ones(2)}, tx=optax.adam(1e-3))
    sd = serialization.to_state_dict(state)
    assert list(sd) == ["step", "params", "opt_state"]
    assert list(sd["opt_state"]) == ["0", "1"] and list(sd["opt_state"]["0"]) == [
        "count",
        "mu",
        "nu",
    ]


def test_round_trip_keeps_every_container_type():
    tree = {
        "d": {"x": 1},
        "f": freeze({"y": {"z": 2}}),
        "l": [1, (2, 3)],
        "p": Point(np.arange(2), Pair(1, 2)),
        "k": {7: "int key"},
    }
    back = serialization.from_state_dict(tree, serialization.to_state_dict(tree))
    assert type(back["f"]) is FrozenDict and back["f"] == tree["f"]
    assert type(back["l"]) is list and type(back["l"][1]) is tuple
    assert type(back["p"]) is Point and type(back["p"].y) is Pair
    assert back["k"] == {7: "int key"}


def test_missing_key_names_the_path_and_both_key_sets():
    template = {"params": {"Dense_0": {"kernel": np.ones(2), "bias": np.zeros(2)}}}
    state = {"params": {"Dense_0": {"kernel": np.ones(2)}}}
    with pytest.raises(StateDictMismatchError) as info:
        serialization.from_state_dict(template, state)
    msg = str(info.value)
    assert "'params/Dense_0'" in msg and "['bias', 'kernel']" in msg and "['kernel']" in msg
    assert isinstance(info.value, ValueError)


def test_extra_state_keys_are_ignored_as_in_flax():
    restored = serialization.from_state_dict({"a": 1}, {"a": 2, "b": 3})
    assert restored == {"a": 2}


def test_shape_mismatch_names_the_path_and_both_shapes():
    template = freeze({"params": {"Dense_0": {"kernel": jnp.ones((3, 4))}}})
    state = {"params": {"Dense_0": {"kernel": np.ones((4, 3), np.float32)}}}
    with pytest.raises(
        StateDictMismatchError, match=r"'params/Dense_0/kernel'.*\(3, 4\).*\(4, 3\)"
    ):
        serialization.from_state_dict(template, state)


def test_dtype_mismatch_names_the_path_and_both_dtypes():
    with pytest.raises(StateDictMismatchError, match=r"'w'.*float32.*int8"):
        serialization.from_state_dict({"w": jnp.ones(2)}, {"w": np.ones(2, np.int8)})


def test_array_template_against_a_dict_is_an_error():
    with pytest.raises(StateDictMismatchError, match=r"shape \(2,\) at 'w'.*\['x'\]"):
        serialization.from_state_dict({"w": jnp.ones(2)}, {"w": {"x": 1}})


def test_dict_template_against_a_leaf_is_an_error():
    with pytest.raises(StateDictMismatchError, match=r"'a'.*int"):
        serialization.from_state_dict({"a": {"x": 1}}, {"a": 3})


def test_scalar_templates_take_whatever_was_saved():
    # TrainState.create sets step=0 (an int); a saved step is often a 0-d array.
    restored = serialization.from_state_dict({"step": 0}, {"step": np.array(5, np.int32)})
    assert restored["step"] == 5


def test_list_length_and_namedtuple_field_mismatches():
    with pytest.raises(StateDictMismatchError, match=r"'l'.*2 items.*1"):
        serialization.from_state_dict({"l": [1, 2]}, {"l": {"0": 5}})
    with pytest.raises(StateDictMismatchError, match=r"Point.*\['x', 'y'\].*\['x', 'z'\]"):
        serialization.from_state_dict(Point(1, 2), {"x": 5, "z": 6})
    with pytest.raises(StateDictMismatchError, match="'0'..'1'"):
        serialization.from_state_dict((1, 2), {"0": 5, "2": 6})


def test_namedtuple_old_layout_is_read():
    old = {"name": "Point", "fields": {"0": "x", "1": "y"}, "values": {"0": 5, "1": 6}}
    assert serialization.from_state_dict(Point(1, 2), old) == Point(5, 6)


def test_dataclass_field_mismatch():
    with pytest.raises(StateDictMismatchError, match=r"Pair.*missing: \['b'\].*unknown: \['c'\]"):
        serialization.from_state_dict({"q": Pair(1, 2)}, {"q": {"a": 1, "c": 2}})


def test_keys_without_unique_string_form():
    with pytest.raises(StateDictMismatchError, match="unique string"):
        serialization.to_state_dict({1: "a", "1": "b"})


class Custom:
    def __init__(self, value):
        self.value = value


def test_register_custom_type_and_current_path():
    seen = []

    def restore(target, state):
        seen.append(serialization.current_path())
        return Custom(state["v"])

    serialization.register_serialization_state(Custom, lambda c: {"v": c.value}, restore)
    with pytest.raises(ValueError, match="already registered"):
        serialization.register_serialization_state(Custom, lambda c: {}, restore)
    tree = {"a": {"b": [Custom(1)]}}
    sd = serialization.to_state_dict(tree)
    assert sd == {"a": {"b": {"0": {"v": 1}}}}
    assert serialization.is_serializable(Custom(1)) and not serialization.is_serializable(3)
    restored = serialization.from_state_dict(tree, {"a": {"b": {"0": {"v": 9}}}})
    assert restored["a"]["b"][0].value == 9
    assert seen == ["./a/b/0"]
    serialization.register_serialization_state(
        Custom, lambda c: {"w": c.value}, restore, override=True
    )
    assert serialization.to_state_dict(Custom(2)) == {"w": 2}


def test_optax_states_round_trip_through_bytes():
    params = {"w": jnp.arange(4.0).reshape(2, 2)}
    tx = optax.chain(optax.clip(1.0), optax.inject_hyperparams(optax.adamw)(learning_rate=0.1))
    opt_state = tx.init(params)
    back = serialization.from_bytes(opt_state, serialization.to_bytes(opt_state))
    assert type(back[1]) is type(opt_state[1])
    assert float(back[1].hyperparams["learning_rate"]) == pytest.approx(0.1)
