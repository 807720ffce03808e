"""FrozenDict and its helper functions behave as Flax's do."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minilinen import errors
from minilinen.core import FrozenDict, copy, freeze, pop, pretty_repr, unfreeze


@pytest.fixture
def params():
    return freeze({"params": {"bias": jnp.zeros(2), "kernel": jnp.ones((3, 2))}, "count": 1})


def test_nested_reads_are_frozen_and_writes_raise(params):
    assert isinstance(params["params"], FrozenDict)
    with pytest.raises(ValueError, match="FrozenDict is immutable"):
        params["new_key"] = jnp.ones((2, 2))
    with pytest.raises(errors.FrozenDictImmutableError):
        del params["params"]


def test_freeze_copies_its_input():
    raw = {"a": {"b": 1}}
    frozen = freeze(raw)
    raw["a"]["b"] = 2
    assert frozen["a"]["b"] == 1


def test_pop_returns_rest_and_value(params):
    rest, value = params.pop("params")
    assert list(rest) == ["count"]
    assert isinstance(value, FrozenDict) and set(value) == {"bias", "kernel"}
    rest, value = pop({"a": 1, "b": 2}, "a")
    assert rest == {"b": 2} and value == 1 and type(rest) is dict


def test_copy_adds_or_replaces(params):
    new = params.copy({"count": 2, "extra": {"x": 1}})
    assert new["count"] == 2 and new["extra"]["x"] == 1 and params["count"] == 1
    assert copy({"a": 1}, {"b": 2}) == {"a": 1, "b": 2}
    assert isinstance(copy(params, {}), FrozenDict)


def test_unfreeze_gives_plain_dicts(params):
    plain = unfreeze(params)
    assert type(plain) is dict and type(plain["params"]) is dict
    plain["params"]["bias"] = 0
    assert params["params"]["bias"].shape == (2,)
    assert unfreeze(3) == 3


def test_pytree_round_trip_keeps_type_and_sorted_leaf_order():
    fd = freeze({"b": 1.0, "a": {"y": 2.0, "x": 3.0}})
    leaves, treedef = jax.tree_util.tree_flatten(fd)
    assert leaves == [3.0, 2.0, 1.0]
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(back, FrozenDict) and back == fd
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(fd)[0]]
    assert paths == ["['a']['x']", "['a']['y']", "['b']"]


def test_works_under_jit_and_grad():
    fd = freeze({"w": jnp.array(2.0)})
    grads = jax.grad(lambda p: p["w"] ** 2)(fd)
    assert isinstance(grads, FrozenDict) and float(grads["w"]) == 4.0
    out = jax.jit(lambda p: jax.tree_util.tree_map(lambda v: v + 1, p))(fd)
    assert isinstance(out, FrozenDict) and float(out["w"]) == 3.0


def test_repr_is_flax_indented_form():
    fd = freeze({"params": {"bias": (5,), "kernel": (10, 5)}})
    assert repr(fd) == (
        "FrozenDict({\n    params: {\n        bias: (5,),\n        kernel: (10, 5),\n    },\n})"
    )
    assert repr(freeze({})) == "FrozenDict({})"
    assert pretty_repr({"a": {"b": 1}}) == "{\n    a: {\n        b: 1,\n    },\n}"


def test_hash_and_equality():
    a, b = freeze({"x": 1, "y": (1, 2)}), freeze({"y": (1, 2), "x": 1})
    assert a == b and hash(a) == hash(b)
    assert a == {"x": 1, "y": (1, 2)}
    assert a != freeze({"x": 2, "y": (1, 2)})


def test_mapping_protocol(params):
    assert len(params) == 2 and "params" in params and "nope" not in params
    assert [k for k, _ in params.items()] == ["params", "count"]
    assert np.array_equal(params.get("params")["kernel"], np.ones((3, 2)))
