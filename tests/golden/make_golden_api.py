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

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the cases import as golden.<name>

from golden import tree_record  # noqa: E402

OUT = HERE / "api"


def record(partitionable: bool) -> None:
    """Run every case with Flax under one threefry setting and write the data."""
    import jax

    jax.config.update("jax_threefry_partitionable", partitionable)
    import flax.linen as nn
    import flax.linen.partitioning  # noqa: F401  (the cases read nn.partitioning)

    from golden.api_cases import CASES, DEVICE_CASES, OUTPUT_CASES, arrays_only, axes_record
    from golden.transforms_cases import apply_case, grad_case

    structures: dict = {}
    arrays: dict = {}
    for name, make in CASES.items():
        c = make(nn)
        variables = c.module.init(c.rngs, *c.args)
        out = apply_case(c, variables)
        plain = arrays_only(variables)
        entry = tree_record.record_parts(structures, arrays, name, {"init": plain})
        entry["axes"] = axes_record(variables, nn.partitioning)
        tree_record.record_parts(structures, arrays, name, {"apply": out})
        if c.grad:
            tree_record.record_parts(structures, arrays, name, {"grad": grad_case(c, variables)})
    for name, make in {**OUTPUT_CASES, **DEVICE_CASES}.items():
        results = make(nn)
        results = {k: v for k, v in results.items() if k != "exact"}
        structures[name] = {"results": tree_record.describe(results, name)}
        arrays.update(tree_record.flatten(results, name))
    tree_record.write(OUT, partitionable, structures, arrays)


if __name__ == "__main__":
    # Four CPU devices for DEVICE_CASES; the other cases do not depend on the count.
    tree_record.main(__file__, record, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
