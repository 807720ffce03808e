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

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the cases import as golden.<name>

from golden import tree_record  # noqa: E402

OUT = HERE / "layers"


def record(partitionable: bool) -> None:
    """Run every case with Flax under one threefry setting and write the data."""
    import flax
    import jax

    jax.config.update("jax_threefry_partitionable", partitionable)
    import flax.linen as nn

    from golden import seed003_cells
    from golden.layer_cases import CASES

    structures: dict = {}
    arrays: dict = {}
    for name, make in CASES.items():
        c = make(nn)
        if c.fn is not None:
            tree_record.record_parts(structures, arrays, name, {"apply": c.fn(*c.args)})
            continue
        variables = c.module.init(c.rngs, *c.args, **c.init_kwargs)
        out = c.module.apply(variables, *c.call_args(), **c.apply_kwargs)
        tree_record.record_parts(structures, arrays, name, {"init": variables, "apply": out})

    # Seed 003's `variables.pop('params')` needs init to return a FrozenDict.
    flax.config.update("flax_return_frozendict", True)
    trained = seed003_cells.batchnorm_vmap_training(nn, seed003_cells.make_data())
    structures["seed003_batchnorm_vmap"] = tree_record.describe(trained, "seed003_batchnorm_vmap")
    arrays.update(tree_record.flatten(trained, "seed003_batchnorm_vmap"))
    tree_record.write(OUT, partitionable, structures, arrays, compress=True)


if __name__ == "__main__":
    tree_record.main(__file__, record)
