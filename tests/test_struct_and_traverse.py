"""struct dataclasses as pytrees, and flatten_dict/unflatten_dict."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from minilinen import struct, traverse_util
from minilinen.core import freeze


class Point(struct.PyTreeNode):
    x: jax.Array
    y: jax.Array
    label: str = struct.field(pytree_node=False, default="p")


@struct.dataclass
class Pair:
    a: int
    b: int = 2


def test_pytree_node_fields_and_static_metadata():
    p = Point(jnp.array(1.0), jnp.array(2.0), label="q")
    leaves, treedef = jax.tree_util.tree_flatten(p)
    assert [float(v) for v in leaves] == [1.0, 2.0]
    back = jax.tree_util.tree_unflatten(treedef, [v * 2 for v in leaves])
    assert back.label == "q" and float(back.y) == 4.0
    assert Point(1.0, 2.0, "a") != Point(1.0, 2.0, "b")


def test_frozen_and_replace():
    p = Point(jnp.array(1.0), jnp.array(2.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 3
    q = p.replace(x=jnp.array(5.0))
    assert float(q.x) == 5.0 and float(p.x) == 1.0
    assert Pair(1).replace(b=3) == Pair(1, 3)


def test_struct_through_jit_keeps_static_fields():
    p = Point(jnp.array(1.0), jnp.array(2.0), label="static")

    @jax.jit
    def move(p):
        return p.replace(x=p.x + p.y)

    out = move(p)
    assert float(out.x) == 3.0 and out.label == "static"


def test_flatten_and_unflatten_round_trip():
    tree = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    flat = traverse_util.flatten_dict(tree)
    assert flat == {("a", "b"): 1, ("a", "c", "d"): 2, ("e",): 3}
    assert traverse_util.unflatten_dict(flat) == tree
    flat_str = traverse_util.flatten_dict(freeze(tree), sep="/")
    assert flat_str == {"a/b": 1, "a/c/d": 2, "e": 3}
    assert traverse_util.unflatten_dict(flat_str, sep="/") == tree


def test_flatten_keeps_empty_nodes_when_asked():
    tree = {"a": {}, "b": 1}
    assert traverse_util.flatten_dict(tree) == {("b",): 1}
    flat = traverse_util.flatten_dict(tree, keep_empty_nodes=True)
    assert flat[("a",)] is traverse_util.empty_node
    assert traverse_util.unflatten_dict(flat) == tree


def test_flatten_is_leaf_stops_descent():
    tree = {"a": {"b": {"c": 1}}}
    flat = traverse_util.flatten_dict(tree, is_leaf=lambda path, v: path == ("a", "b"))
    assert flat == {("a", "b"): {"c": 1}}
