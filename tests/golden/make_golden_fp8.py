"""Make the golden data of ``fp8_cases.py`` with the real Flax linen (not run by CI).

How the data was made: with flax 0.12.8 and jax 0.10.2 on CPU (the ``bench`` extra),
``.venv/bin/python tests/golden/make_golden_fp8.py`` starts one fresh subprocess per
setting of ``jax_threefry_partitionable`` (False, True). Each runs every case with
``nn = flax.linen`` and records its tree of results. It writes
``fp8/threefry_{0,1}.npz`` (arrays under '/'-joined paths) and
``fp8/threefry_{0,1}.json`` (tree structures in Flax's key order).
``tests/test_fp8_golden.py`` replays the cases with minilinen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "fp8"


def record(partitionable: bool) -> None:
    """Run every case with Flax under one threefry setting and write the data."""
    import flax
    import jax
    import numpy as np

    jax.config.update("jax_threefry_partitionable", partitionable)
    import flax.linen as nn

    sys.path.insert(0, str(HERE.parent))
    from golden.fp8_cases import CASES
    from golden.tree_record import describe, flatten

    structures: dict = {}
    arrays: dict = {}
    for name, make in CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            results = make(nn)
        exact = results.pop("exact", [])
        structures[name] = {"exact": exact, "results": describe(results, name)}
        arrays.update(flatten(results, name))
    OUT.mkdir(exist_ok=True)
    stem = OUT / f"threefry_{int(partitionable)}"
    meta = {
        "flax": flax.__version__,
        "jax": jax.__version__,
        "jax_threefry_partitionable": partitionable,
        "backend": jax.default_backend(),
    }
    with open(f"{stem}.json", "w") as f:
        json.dump({"meta": meta, "cases": structures}, f, indent=1)
        f.write("\n")
    np.savez(f"{stem}.npz", **arrays)
    print(f"wrote {stem}.json/.npz: {len(structures)} cases, {len(arrays)} arrays")


def main() -> None:
    """Record both threefry settings, each in a fresh interpreter."""
    if len(sys.argv) == 3 and sys.argv[1] == "--partitionable":
        record(bool(int(sys.argv[2])))
        return
    for setting in ("0", "1"):
        cmd = [sys.executable, __file__, "--partitionable", setting]
        subprocess.run(cmd, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})


if __name__ == "__main__":
    main()
