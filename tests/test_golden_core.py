"""minilinen's Module system against goldens recorded with the real Flax linen.

Each case of ``golden/core_models.py`` runs under both settings of
``jax_threefry_partitionable``. ``init`` must return the same collections, keys in
the same order, and bit-identical arrays; ``init_with_output``'s output and
``apply`` (on Flax's variables) must have the same structure and values to
float32 precision. The data comes from
``golden/make_golden.py``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from golden.core_models import CASES
from golden.tree_record import describe, flatten, load, rebuild

import minilinen as nn

GOLDEN = Path(__file__).parent / "golden" / "core"


@cache
def golden(partitionable: bool) -> tuple[dict, dict]:
    """(structures by case, arrays by path) recorded with Flax for one setting."""
    return load(GOLDEN, partitionable)


def keys_outline(structure: dict) -> object:
    """The structure without leaf details: keys in order, sequence kinds."""
    if "map" in structure:
        return [[k, keys_outline(v)] for k, v in structure["map"]]
    if "seq" in structure:
        return {structure["seq"]: [keys_outline(v) for v in structure["items"]]}
    return "leaf" if "leaf" in structure else None


def assert_structure(actual, expected: dict, prefix: str) -> None:
    """Same keys in the same order, then the same dtypes and shapes."""
    assert keys_outline(describe(actual)) == keys_outline(expected)
    assert describe(actual, prefix) == expected


def as_jax(structure: dict, arrays: dict):
    """Flax's recorded variables as the plain dicts a user would pass to apply."""
    return rebuild(structure, {k: jnp.asarray(v) for k, v in arrays.items()})


@pytest.mark.parametrize("name", list(CASES))
def test_init_matches_flax(name, partitionable):
    structures, arrays = golden(partitionable)
    c = CASES[name](nn)
    variables = c.module.init(c.rngs, *c.args, **c.init_kwargs)

    assert_structure(variables, structures[name]["init"], f"{name}/init")
    for path, value in flatten(variables, f"{name}/init").items():
        want = arrays[path]
        assert value.dtype == want.dtype, path
        assert np.array_equal(value, want), f"{path} differs from Flax"


def assert_outputs_match(out, name: str, part: str, partitionable: bool) -> None:
    """``out`` has Flax's structure and its values to float32 precision."""
    structures, arrays = golden(partitionable)
    assert_structure(out, structures[name][part], f"{name}/{part}")
    for path, value in flatten(out, f"{name}/{part}").items():
        want = arrays[path]
        assert value.dtype == want.dtype, path
        if np.issubdtype(want.dtype, np.floating):
            rtol = 1e-3 if want.dtype == np.float16 else 2e-6
            np.testing.assert_allclose(value, want, rtol=rtol, atol=1e-6, err_msg=path)
        else:
            np.testing.assert_array_equal(value, want, err_msg=path)


@pytest.mark.parametrize("name", list(CASES))
def test_init_with_output_matches_flax(name, partitionable):
    c = CASES[name](nn)
    out, variables = c.module.init_with_output(c.rngs, *c.args, **c.init_kwargs)
    assert_outputs_match(out, name, "init_out", partitionable)
    assert_outputs_match(variables, name, "init", partitionable)


@pytest.mark.parametrize("name", list(CASES))
def test_apply_matches_flax(name, partitionable):
    structures, arrays = golden(partitionable)
    c = CASES[name](nn)
    variables = as_jax(structures[name]["init"], arrays)
    out = c.module.apply(variables, *c.call_args(), **c.apply_kwargs)
    assert_outputs_match(out, name, "apply", partitionable)
