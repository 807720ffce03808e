"""Lifted transforms (scan, vmap, remat, remat_scan, map_variables, jit) against
goldens recorded with the real Flax linen.

Each case of ``golden/transforms_cases.py`` runs under both settings of
``jax_threefry_partitionable``: ``init`` must give the same collections, keys in
the same order, the same partitioning axis names and bit-identical arrays;
``apply`` on Flax's variables and the parameter gradient must match to float32
precision. The data comes from ``golden/make_golden_transforms.py``.
"""

from __future__ import annotations

import types
from functools import cache
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from golden.transforms_cases import CASES, apply_case, box_names, grad_case
from golden.tree_record import describe, flatten, load, rebuild

import minilinen
from minilinen import partitioning, spmd, transforms

GOLDEN = Path(__file__).parent / "golden" / "transforms"


def namespace() -> types.SimpleNamespace:
    """minilinen as ``nn``, with the transform and partitioning names it will export."""
    ns = types.SimpleNamespace(**{k: getattr(minilinen, k) for k in dir(minilinen)})
    for module in (transforms, spmd):
        for name in module.__all__:
            setattr(ns, name, getattr(module, name))
    ns.partitioning = partitioning
    return ns


nn = namespace()


@cache
def golden(partitionable: bool) -> tuple[dict, dict]:
    """(entries by case, arrays by path) recorded with Flax for one setting."""
    return load(GOLDEN, partitionable)


def keys_outline(structure: dict) -> object:
    """The structure without leaf details: keys in order, sequence kinds."""
    if "map" in structure:
        return [[k, keys_outline(v)] for k, v in structure["map"]]
    if "seq" in structure:
        return {structure["seq"]: [keys_outline(v) for v in structure["items"]]}
    return "leaf" if "leaf" in structure else None


def assert_close(tree, structure: dict, arrays: dict, prefix: str) -> None:
    """Same keys in the same order, dtypes and shapes; values to float32 precision."""
    assert keys_outline(describe(tree)) == keys_outline(structure)
    assert describe(tree, prefix) == structure
    for path, value in flatten(tree, prefix).items():
        want = arrays[path]
        if np.issubdtype(want.dtype, np.floating):
            np.testing.assert_allclose(value, want, rtol=2e-6, atol=2e-6, err_msg=path)
        else:
            np.testing.assert_array_equal(value, want, err_msg=path)


@pytest.mark.parametrize("name", list(CASES))
def test_transform_matches_flax(name, partitionable):
    structures, arrays = golden(partitionable)
    entry = structures[name]
    c = CASES[name](nn)

    boxed = c.module.init(c.rngs, *c.args)
    variables = nn.unbox(boxed)
    assert keys_outline(describe(variables)) == keys_outline(entry["init"])
    assert describe(variables, f"{name}/init") == entry["init"]
    for path, value in flatten(variables, f"{name}/init").items():
        assert np.array_equal(value, arrays[path]), f"{path} differs from Flax"
    assert box_names(boxed) == entry["boxes"]

    flax_vars = rebuild(entry["init"], {k: jnp.asarray(v) for k, v in arrays.items()})
    assert_close(apply_case(c, flax_vars), entry["apply"], arrays, f"{name}/apply")
    if c.grad:
        assert_close(grad_case(c, flax_vars), entry["grad"], arrays, f"{name}/grad")
