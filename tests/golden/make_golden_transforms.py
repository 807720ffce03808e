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

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the cases import as golden.<name>

from golden import tree_record  # noqa: E402

OUT = HERE / "transforms"


def record(partitionable: bool) -> None:
    """Run every case with Flax under one threefry setting and write the data."""
    import jax

    jax.config.update("jax_threefry_partitionable", partitionable)
    import flax.linen as nn
    import flax.linen.partitioning  # noqa: F401  (nn.partitioning: ScanIn / ScanOut)

    from golden.transforms_cases import CASES, apply_case, box_names, grad_case

    structures: dict = {}
    arrays: dict = {}
    for name, make in CASES.items():
        c = make(nn)
        boxed = c.module.init(c.rngs, *c.args)
        variables = nn.unbox(boxed)
        entry = tree_record.record_parts(structures, arrays, name, {"init": variables})
        entry["boxes"] = box_names(boxed)
        tree_record.record_parts(structures, arrays, name, {"apply": apply_case(c, variables)})
        if c.grad:
            tree_record.record_parts(structures, arrays, name, {"grad": grad_case(c, variables)})
    tree_record.write(OUT, partitionable, structures, arrays)


if __name__ == "__main__":
    tree_record.main(__file__, record)
