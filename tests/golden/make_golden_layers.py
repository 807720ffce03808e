"""Make the layer golden data with the real Flax linen (not run by CI).

How the data was made: with flax 0.12.8 and jax 0.10.2 on CPU (the ``bench`` extra),
``.venv/bin/python tests/golden/make_golden_layers.py`` starts one fresh subprocess per
setting of ``jax_threefry_partitionable`` (False, True). Each runs every case of
``layer_cases.py`` with ``nn = flax.linen``: for a module case ``init`` (all the
collections it returns) and ``apply`` on those variables (the output, and the mutated
collections when ``mutable`` is set); for a function case the function's output. It
also trains seed 003's BatchNorm MLP under ``jax.vmap`` (``seed003_cells.py``) and
records its losses, parameters and batch statistics. It writes
``layers/threefry_{0,1}.npz`` (arrays under '/'-joined paths ``{case}/init/...`` and
``{case}/apply/...``) and ``layers/threefry_{0,1}.json`` (the tree structures, keys in
Flax's order). ``tests/test_layers_golden.py`` and ``tests/test_layers_normalization.py``
replay the same code with minilinen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "layers"


def record(partitionable: bool) -> None:
    """Run every case with Flax under one threefry setting and write the data."""
    import flax
    import jax
    import numpy as np

    jax.config.update("jax_threefry_partitionable", partitionable)
    import flax.linen as nn

    sys.path.insert(0, str(HERE.parent))
    from golden import seed003_cells
    from golden.layer_cases import CASES
    from golden.tree_record import describe, flatten

    structures: dict = {}
    arrays: dict = {}
    for name, make in CASES.items():
        c = make(nn)
        if c.fn is not None:
            out = c.fn(*c.args)
            structures[name] = {"apply": describe(out, f"{name}/apply")}
            arrays.update(flatten(out, f"{name}/apply"))
            continue
        variables = c.module.init(c.rngs, *c.args, **c.init_kwargs)
        out = c.module.apply(variables, *c.call_args(), **c.apply_kwargs)
        structures[name] = {
            "init": describe(variables, f"{name}/init"),
            "apply": describe(out, f"{name}/apply"),
        }
        arrays.update(flatten(variables, f"{name}/init"))
        arrays.update(flatten(out, f"{name}/apply"))

    # Seed 003's `variables.pop('params')` needs init to return a FrozenDict.
    flax.config.update("flax_return_frozendict", True)
    trained = seed003_cells.batchnorm_vmap_training(nn, seed003_cells.make_data())
    structures["seed003_batchnorm_vmap"] = describe(trained, "seed003_batchnorm_vmap")
    arrays.update(flatten(trained, "seed003_batchnorm_vmap"))

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
    np.savez_compressed(f"{stem}.npz", **arrays)
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
