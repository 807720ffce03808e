"""Record a tree of arrays as (structure, flat arrays) and rebuild it.

The structure is JSON: a mapping keeps its keys in insertion order, so a test can
check both the keys and their order; arrays live apart in an npz under
'/'-joined paths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def describe(tree: Any, prefix: str = "") -> Any:
    """The JSON structure of ``tree``; leaves name their flat path, dtype and shape."""
    if isinstance(tree, Mapping):
        return {"map": [[str(k), describe(v, f"{prefix}/{k}")] for k, v in tree.items()]}
    if isinstance(tree, (tuple, list)):
        items = [describe(v, f"{prefix}/{i}") for i, v in enumerate(tree)]
        return {"seq": type(tree).__name__, "items": items}
    if tree is None:
        return {"none": True}
    arr = np.asarray(tree)
    return {"leaf": prefix, "dtype": str(arr.dtype), "shape": list(arr.shape)}


def flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Every leaf of ``tree`` as a NumPy array under its '/'-joined path."""
    out: dict[str, np.ndarray] = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}/{k}"))
    elif isinstance(tree, (tuple, list)):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}/{i}"))
    elif tree is not None:
        out[prefix] = np.asarray(tree)
    return out


def rebuild(structure: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """Plain dicts, tuples and lists holding the arrays, in the recorded order."""
    if "map" in structure:
        return {k: rebuild(v, arrays) for k, v in structure["map"]}
    if "seq" in structure:
        items = [rebuild(v, arrays) for v in structure["items"]]
        return tuple(items) if structure["seq"] == "tuple" else items
    if "none" in structure:
        return None
    return arrays[structure["leaf"]]


def load(directory: Path, partitionable: bool) -> tuple[dict, dict]:
    """(entries by case, arrays by path) that Flax recorded under one threefry setting."""
    stem = directory / f"threefry_{int(partitionable)}"
    with open(f"{stem}.json") as f:
        structures = json.load(f)["cases"]
    with np.load(f"{stem}.npz") as npz:
        return structures, dict(npz)
