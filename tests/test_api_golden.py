"""The rest of linen's API against goldens recorded with the real Flax.

``golden/make_golden_api.py`` ran every case of ``golden/api_cases.py`` with
``flax.linen``; here the same cases run with minilinen, under both settings of
``jax_threefry_partitionable``: the variables must come out with the same keys in
the same order and bit-identical arrays, the same logical axis names, and
``apply``/gradients equal to float32 rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from golden.api_cases import CASES, DEVICE_CASES, OUTPUT_CASES, arrays_only, axes_record
from golden.transforms_cases import apply_case, grad_case
from golden.tree_record import describe, flatten, load, rebuild
from test_transforms_golden import assert_close, keys_outline

import minilinen as nn
import minilinen.partitioning  # noqa: F401  (the cases read nn.partitioning)

GOLDEN = Path(__file__).parent / "golden" / "api"


@cache
def golden(partitionable: bool) -> tuple[dict, dict]:
    """(entries by case, arrays by path) recorded with Flax for one setting."""
    return load(GOLDEN, partitionable)


@pytest.mark.parametrize("name", list(CASES))
def test_api_matches_flax(name, partitionable):
    structures, arrays = golden(partitionable)
    entry = structures[name]
    c = CASES[name](nn)

    variables = c.module.init(c.rngs, *c.args)
    plain = arrays_only(variables)
    assert keys_outline(describe(plain)) == keys_outline(entry["init"])
    assert describe(plain, f"{name}/init") == entry["init"]
    for path, value in flatten(plain, f"{name}/init").items():
        assert np.array_equal(value, arrays[path]), f"{path} differs from Flax"
    assert axes_record(variables, nn.partitioning) == entry["axes"]

    flax_vars = rebuild(entry["init"], {k: jnp.asarray(v) for k, v in arrays.items()})
    flax_vars.update({c: v for c, v in variables.items() if c.endswith("_axes")})
    assert_close(apply_case(c, flax_vars), entry["apply"], arrays, f"{name}/apply")
    if c.grad:
        assert_close(grad_case(c, flax_vars), entry["grad"], arrays, f"{name}/grad")


def check_results(cases: dict, name: str, partitionable: bool) -> None:
    """Case ``name`` of ``cases`` run with minilinen gives the results Flax recorded."""
    structures, arrays = golden(partitionable)
    results = cases[name](nn)
    exact = results.pop("exact")
    assert_close(results, structures[name]["results"], arrays, name)
    for key in exact:
        for path, value in flatten(results[key], f"{name}/{key}").items():
            np.testing.assert_array_equal(value, arrays[path], err_msg=path, strict=True)


@pytest.mark.parametrize("name", list(OUTPUT_CASES))
def test_api_results_match_flax(name, partitionable):
    check_results(OUTPUT_CASES, name, partitionable)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DEVICE_CASES))
def test_device_results_match_flax(name, partitionable):
    # JAX fixes its device count at startup, so 4 simulated CPU devices need a fresh process.
    code = (
        f"import jax; jax.config.update('jax_threefry_partitionable', {partitionable}); "
        f"import test_api_golden as t; t.check_results(t.DEVICE_CASES, {name!r}, {partitionable})"
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
