"""Make the lifted-transform golden data with the real Flax linen (not run by CI).

How the data was made: with flax 0.12.8 and jax 0.10.2 on CPU (the ``bench`` extra),
``.venv/bin/python tests/golden/make_golden_transforms.py`` starts one fresh
subprocess per setting of ``jax_threefry_partitionable`` (False, True). Each runs
every case of ``transforms_cases.py`` with ``nn = flax.linen``: ``init`` (all
collections, partitioning boxes unboxed, their axis names kept apart), ``apply`` on
those variables, and for cases marked ``grad`` the gradient of the output's sum
with respect to the params. It writes ``transforms/threefry_{0,1}.npz`` (arrays
under '/'-joined paths ``{case}/init/...``, ``{case}/apply/...``,
``{case}/grad/...``) and ``transforms/threefry_{0,1}.json`` (tree structures, keys in
Flax's order, and box names). ``tests/test_transforms_golden.py`` replays the
cases with minilinen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "transforms"


def record(partitionable: bool) -> None:
    """Run every case with Flax under one threefry setting and write the data."""
    import flax
    import jax
    import numpy as np

    jax.config.update("jax_threefry_partitionable", partitionable)
    import flax.linen as nn
    import flax.linen.partitioning  # noqa: F401  (nn.partitioning: ScanIn / ScanOut)

    sys.path.insert(0, str(HERE.parent))
    from golden.transforms_cases import CASES, apply_case, box_names, grad_case
    from golden.tree_record import describe, flatten

    structures: dict = {}
    arrays: dict = {}
    for name, make in CASES.items():
        c = make(nn)
        boxed = c.module.init(c.rngs, *c.args)
        variables = nn.unbox(boxed)
        out = apply_case(c, variables)
        entry = {
            "init": describe(variables, f"{name}/init"),
            "boxes": box_names(boxed),
            "apply": describe(out, f"{name}/apply"),
        }
        arrays.update(flatten(variables, f"{name}/init"))
        arrays.update(flatten(out, f"{name}/apply"))
        if c.grad:
            grads = grad_case(c, variables)
            entry["grad"] = describe(grads, f"{name}/grad")
            arrays.update(flatten(grads, f"{name}/grad"))
        structures[name] = entry
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
