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

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the cases import as golden.<name>

from golden import tree_record  # noqa: E402

OUT = HERE / "fp8"


def record(partitionable: bool) -> None:
    """Run every case with Flax under one threefry setting and write the data."""
    import warnings

    import jax

    jax.config.update("jax_threefry_partitionable", partitionable)
    import flax.linen as nn

    from golden.fp8_cases import CASES

    structures: dict = {}
    arrays: dict = {}
    for name, make in CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            results = make(nn)
        exact = results.pop("exact", [])
        structures[name] = {"exact": exact, "results": tree_record.describe(results, name)}
        arrays.update(tree_record.flatten(results, name))
    tree_record.write(OUT, partitionable, structures, arrays)


if __name__ == "__main__":
    tree_record.main(__file__, record)
