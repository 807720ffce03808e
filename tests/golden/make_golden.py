"""Make the core golden data with the real Flax linen (not run by CI).

How the data was made: with flax 0.12.8 and jax 0.10.2 on CPU (the ``bench`` extra),
``.venv/bin/python tests/golden/make_golden.py`` starts one fresh subprocess per
setting of ``jax_threefry_partitionable`` (False, True). Each runs every case of
``core_models.py`` with ``nn = flax.linen``: ``init_with_output`` (all collections
it returns, and the output) and ``apply`` on those variables (the output, and the
mutated collections when ``mutable`` is set). It writes ``core/threefry_{0,1}.npz``
(arrays under '/'-joined paths ``{case}/init/...``, ``{case}/init_out/...`` and
``{case}/apply/...``) and
``core/threefry_{0,1}.json`` (the tree structures, keys in Flax's order).
``tests/test_golden_core.py`` replays the same cases with minilinen.

Seed 003 prints losses but its dump kept no output, so the False subprocess also
runs ``seed003_cells.py`` with Flax (``flax_return_frozendict`` on, as the seed's
``variables.pop('params')`` needs) and writes ``seeds/seed003.{json,npz}``, which
``tests/test_seeds.py`` checks.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the cases import as golden.<name>

from golden import tree_record  # noqa: E402

OUT = HERE / "core"


def record(partitionable: bool) -> None:
    """Run every case with Flax under one threefry setting and write the data."""
    import jax

    jax.config.update("jax_threefry_partitionable", partitionable)
    import flax.linen as nn

    from golden.core_models import CASES

    structures: dict = {}
    arrays: dict = {}
    for name, make in CASES.items():
        c = make(nn)
        init_out, variables = c.module.init_with_output(c.rngs, *c.args, **c.init_kwargs)
        out = c.module.apply(variables, *c.call_args(), **c.apply_kwargs)
        parts = {"init": variables, "init_out": init_out, "apply": out}
        tree_record.record_parts(structures, arrays, name, parts)
    tree_record.write(OUT, partitionable, structures, arrays)
    if not partitionable:
        record_seed003(nn)


def record_seed003(nn) -> None:
    """Run seed 003's cells with Flax and write what they compute."""
    import json

    import flax
    import jax
    import numpy as np

    from golden import seed003_cells
    from golden.tree_record import describe, flatten

    flax.config.update("flax_return_frozendict", True)
    data = seed003_cells.make_data()
    results = {
        "bias_adder": seed003_cells.bias_adder_training(nn, data),
        "batchnorm_vmap": seed003_cells.batchnorm_vmap_training(nn, data),
    }
    out = HERE / "seeds"
    out.mkdir(exist_ok=True)
    meta = {"flax": flax.__version__, "jax": jax.__version__, "jax_threefry_partitionable": False}
    with open(out / "seed003.json", "w") as f:
        json.dump({"meta": meta, "results": describe(results)}, f, indent=1)
        f.write("\n")
    np.savez(out / "seed003.npz", **flatten(results))
    print(f"wrote {out}/seed003.json/.npz")


if __name__ == "__main__":
    tree_record.main(__file__, record)
