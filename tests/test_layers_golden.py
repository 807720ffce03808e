"""Every layer against goldens recorded with the real Flax linen.

Each case of ``golden/layer_cases.py`` (at least three configurations per layer)
runs under both settings of ``jax_threefry_partitionable``: ``init`` must return
the same collections, keys in the same order, and bit-identical arrays; ``apply``
must return the same structure with values within 1e-6 relative of Flax's. The
data comes from ``golden/make_golden_layers.py``.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from golden.layer_cases import CASES
from golden.tree_record import describe, flatten, load

import minilinen as nn

GOLDEN = Path(__file__).parent / "golden" / "layers"
RTOL = 1e-6


@cache
def golden(partitionable: bool) -> tuple[dict, dict]:
    """(structures by case, arrays by path) recorded with Flax for one setting."""
    structures, arrays = load(GOLDEN, partitionable)
    # npz stores bfloat16 as raw 2-byte voids; the structure names the real dtype.
    for path, dtype in leaf_dtypes(structures).items():
        if arrays[path].dtype.kind == "V":
            arrays[path] = arrays[path].view(jnp.dtype(dtype))
    return structures, arrays


def leaf_dtypes(structure: dict | list) -> dict[str, str]:
    """Every leaf path in a recorded structure with its dtype name."""
    out: dict[str, str] = {}
    if isinstance(structure, dict):
        if "leaf" in structure:
            return {structure["leaf"]: structure["dtype"]}
        for v in structure.values():
            if isinstance(v, dict | list):
                out.update(leaf_dtypes(v))
    else:
        for v in structure:
            if isinstance(v, dict | list):
                out.update(leaf_dtypes(v))
    return out


def depends_on_threefry(name: str) -> bool:
    """Whether Flax recorded different data for ``name`` under the two settings."""
    a, b = golden(False)[1], golden(True)[1]
    paths = [p for p in b if p.startswith(f"{name}/")]
    return any(a[p].tobytes() != b[p].tobytes() for p in paths)


# Every case under the default setting; under the legacy one only the cases whose
# params or outputs change with it (the rest would repeat the same check), and of
# those only the ones whose apply draws random bits run apply again: given
# bit-identical params, a deterministic apply computes the same thing either way.
RUNS = [(True, n) for n in CASES] + [(False, n) for n in CASES if depends_on_threefry(n)]


@pytest.fixture(scope="module", autouse=True)
def restore_threefry():
    """Put the threefry setting back once this module's tests are done."""
    old = jax.config.jax_threefry_partitionable
    yield
    jax.config.update("jax_threefry_partitionable", old)


def sort_maps(structure: dict) -> dict:
    """The structure with every mapping's keys sorted."""
    if "map" in structure:
        return {"map": sorted([k, sort_maps(v)] for k, v in structure["map"])}
    if "seq" in structure:
        return {**structure, "items": [sort_maps(v) for v in structure["items"]]}
    return structure


def assert_close(actual: np.ndarray, want: np.ndarray, path: str) -> None:
    """Same dtype and shape; integers and bools equal, floats within RTOL of Flax's scale."""
    assert actual.dtype == want.dtype, f"{path}: dtype {actual.dtype} != Flax's {want.dtype}"
    assert actual.shape == want.shape, f"{path}: shape {actual.shape} != Flax's {want.shape}"
    if not np.issubdtype(want.dtype, np.inexact):
        assert np.array_equal(actual, want), f"{path} differs from Flax"
        return
    a, w = actual.astype(np.float64), want.astype(np.float64)
    scale = max(float(np.abs(w).max(initial=0.0)), 1e-30)
    np.testing.assert_allclose(a, w, rtol=RTOL, atol=RTOL * scale, err_msg=path)


def test_every_layer_has_three_configurations():
    kinds = Counter()
    for name in CASES:
        c = CASES[name](nn)
        what = c.fn if c.fn is not None else type(c.module)
        what = getattr(what, "func", what)  # functools.partial
        kinds[getattr(what, "__name__", str(what))] += 1
    layers = [
        *("Dense", "DenseGeneral", "Embed", "Einsum", "Conv", "ConvTranspose"),
        *("BatchNorm", "LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm"),
        *("dot_product_attention", "dot_product_attention_weights"),
        *("MultiHeadDotProductAttention", "SelfAttention", "make_attention_mask"),
        *("make_causal_mask", "combine_masks", "LSTMCell", "OptimizedLSTMCell"),
        *("GRUCell", "SimpleCell", "RNN", "Bidirectional", "Dropout", "max_pool"),
        *("avg_pool", "pool", "Sequential", "PReLU", "ConvLocal", "MGUCell", "ConvLSTMCell"),
    ]
    thin = {k: kinds[k] for k in layers if kinds[k] < 3}
    assert not thin, f"layers with fewer than three golden configurations: {thin}"


@pytest.mark.parametrize(
    ("partitionable", "name"), RUNS, ids=[f"threefry{int(p)}-{n}" for p, n in RUNS]
)
def test_layer_matches_flax(partitionable, name):
    if jax.config.jax_threefry_partitionable != partitionable:
        jax.config.update("jax_threefry_partitionable", partitionable)
    structures, arrays = golden(partitionable)
    c = CASES[name](nn)
    expected = structures[name]

    if c.fn is None:
        variables = c.module.init(c.rngs, *c.args, **c.init_kwargs)
        got = describe(variables, f"{name}/init")
        # Keys in Flax's order too (to_bytes depends on it).
        assert got == expected["init"]
        for path, value in flatten(variables, f"{name}/init").items():
            want = arrays[path]
            assert value.dtype == want.dtype, path
            assert np.array_equal(value, want), f"{path} is not bit-identical to Flax's"
        if not partitionable and "rngs" not in c.apply_kwargs:
            return
        out = c.module.apply(variables, *c.call_args(), **c.apply_kwargs)
    else:
        out = c.fn(*c.args)

    got = describe(out, f"{name}/apply")
    assert sort_maps(got) == sort_maps(expected["apply"])
    for path, value in flatten(out, f"{name}/apply").items():
        assert_close(value, arrays[path], path)
