"""Record a tree of arrays as (structure, flat arrays) and rebuild it.

The structure is JSON: a mapping keeps its keys in insertion order, so a test can
check both the keys and their order; arrays live apart in an npz under
'/'-joined paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
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


def record_parts(structures: dict, arrays: dict, name: str, parts: Mapping[str, Any]) -> dict:
    """Records each part's tree of case ``name`` (its structure, its arrays under
    ``name/part``) and returns the case's entry, for more keys to be added to it."""
    entry = structures.setdefault(name, {})
    for part, tree in parts.items():
        entry[part] = describe(tree, f"{name}/{part}")
        arrays.update(flatten(tree, f"{name}/{part}"))
    return entry


def write(directory: Path, partitionable: bool, structures: dict, arrays: dict, compress=False):
    """Writes what the real Flax computed under one threefry setting, as ``load`` reads it:
    ``threefry_{0,1}.json`` (structures, and the versions that made them) and ``.npz``."""
    import flax
    import jax

    directory.mkdir(exist_ok=True)
    stem = directory / f"threefry_{int(partitionable)}"
    meta = {
        "flax": flax.__version__,
        "jax": jax.__version__,
        "jax_threefry_partitionable": partitionable,
        "backend": jax.default_backend(),
    }
    with open(f"{stem}.json", "w") as f:
        json.dump({"meta": meta, "cases": structures}, f, indent=1)
        f.write("\n")
    (np.savez_compressed if compress else np.savez)(f"{stem}.npz", **arrays)
    print(f"wrote {stem}.json/.npz: {len(structures)} cases, {len(arrays)} arrays")


def main(script: str, record: Callable[[bool], None], env: Mapping[str, str] = {}) -> None:
    """A generator's command line: records both threefry settings, each in a fresh
    interpreter (the setting must be chosen before JAX makes its first key)."""
    if len(sys.argv) == 3 and sys.argv[1] == "--partitionable":
        record(bool(int(sys.argv[2])))
        return
    for setting in ("0", "1"):
        cmd = [sys.executable, script, "--partitionable", setting]
        subprocess.run(cmd, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu", **env})
