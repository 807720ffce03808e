"""Make the golden data of ``api_cases.py`` with the real Flax linen (not run by CI).

How the data was made: with flax 0.12.8 and jax 0.10.2 on CPU (the ``bench`` extra),
``.venv/bin/python tests/golden/make_golden_api.py`` starts one fresh subprocess per
setting of ``jax_threefry_partitionable`` (False, True). Each runs every case with
``nn = flax.linen``: ``init`` (array collections; the ``*_axes`` collections as
``get_axis_names`` lists), ``apply`` on those variables and, for cases marked
``grad``, the gradient of the output's sum with respect to the params; each output
case's tree of results (DEVICE_CASES too: every run has 4 simulated CPU devices,
``XLA_FLAGS=--xla_force_host_platform_device_count=4``). It writes
``api/threefry_{0,1}.npz`` (arrays under '/'-joined paths) and
``api/threefry_{0,1}.json`` (tree structures in Flax's key order, and axis names).
``tests/test_api_golden.py`` replays the cases with minilinen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "api"


def record(partitionable: bool) -> None:
    """Run every case with Flax under one threefry setting and write the data."""
    import flax
    import jax
    import numpy as np

    jax.config.update("jax_threefry_partitionable", partitionable)
    import flax.linen as nn
    import flax.linen.partitioning  # noqa: F401  (the cases read nn.partitioning)

    sys.path.insert(0, str(HERE.parent))
    from golden.api_cases import CASES, DEVICE_CASES, OUTPUT_CASES, arrays_only, axes_record
    from golden.transforms_cases import apply_case, grad_case
    from golden.tree_record import describe, flatten

    structures: dict = {}
    arrays: dict = {}
    for name, make in CASES.items():
        c = make(nn)
        variables = c.module.init(c.rngs, *c.args)
        out = apply_case(c, variables)
        plain = arrays_only(variables)
        entry = {
            "init": describe(plain, f"{name}/init"),
            "axes": axes_record(variables, nn.partitioning),
            "apply": describe(out, f"{name}/apply"),
        }
        arrays.update(flatten(plain, f"{name}/init"))
        arrays.update(flatten(out, f"{name}/apply"))
        if c.grad:
            grads = grad_case(c, variables)
            entry["grad"] = describe(grads, f"{name}/grad")
            arrays.update(flatten(grads, f"{name}/grad"))
        structures[name] = entry
    for name, make in {**OUTPUT_CASES, **DEVICE_CASES}.items():
        results = make(nn)
        results = {k: v for k, v in results.items() if k != "exact"}
        structures[name] = {"results": describe(results, name)}
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
        # Four CPU devices for DEVICE_CASES; the other cases do not depend on the count.
        devices = "--xla_force_host_platform_device_count=4"
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": devices}
        subprocess.run(cmd, check=True, env=env)


if __name__ == "__main__":
    main()
