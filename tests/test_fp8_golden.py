"""fp8_ops against goldens recorded with the real Flax.

``golden/make_golden_fp8.py`` ran every case of ``golden/fp8_cases.py`` with
``flax.linen``; here the same cases run with minilinen, under both settings of
``jax_threefry_partitionable``: the variables of Fp8DotGeneral, NANOOFp8DotGeneralOp,
Fp8DotGeneralOp and Fp8Einsum must be bit-identical, and the outputs, the gradients
(the new scales and amax histories among them) and the variables after each
``TrainState.apply_gradients`` equal to float32 rounding.
"""

from __future__ import annotations

import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from golden.fp8_cases import CASES
from golden.tree_record import flatten, load
from test_transforms_golden import assert_close

import minilinen as nn

GOLDEN = Path(__file__).parent / "golden" / "fp8"


@cache
def golden(partitionable: bool) -> tuple[dict, dict]:
    """(entries by case, arrays by path) recorded with Flax for one setting."""
    return load(GOLDEN, partitionable)


def test_the_goldens_cover_both_threefry_settings():
    a, b = golden(False)[1], golden(True)[1]
    assert a.keys() == b.keys()
    assert any(not np.array_equal(a[p], b[p]) for p in a), "no case depends on threefry"


@pytest.mark.parametrize("name", list(CASES))
def test_fp8_matches_flax(name, partitionable):
    structures, arrays = golden(partitionable)
    entry = structures[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        results = CASES[name](nn)
    assert results.pop("exact", []) == entry["exact"]
    assert_close(results, entry["results"], arrays, name)
    for key in entry["exact"]:
        for path, value in flatten(results[key], f"{name}/{key}").items():
            assert value.dtype == arrays[path].dtype, path
            assert np.array_equal(value, arrays[path]), f"{path} is not bit-identical to Flax's"
