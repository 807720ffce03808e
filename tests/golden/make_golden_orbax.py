"""Make the Orbax and tree-path golden data with the real Flax (not run by CI).

How the data was made: with flax 0.12.8, orbax-checkpoint 0.12.8, jax 0.10.2,
optax 0.2.8 on CPU, ``.venv/bin/python tests/golden/make_golden_orbax.py`` writes
into ``orbax/``:

- ``tree_paths.json``: for every tree of ``orbax_cases.path_cases`` built with
  Flax, each leaf's key entries (class name and key) and ``keystr``;
- ``flax_variables/``: ``ocp.StandardCheckpointer`` of Flax's freshly initialized
  variables of ``orbax_cases.model`` (key 0), as a FrozenDict;
- ``flax_train_state/``: the same of Flax's TrainState subclass with
  ``batch_stats`` after ``STEPS_BEFORE_SAVE`` training steps;
- ``flax_run.json``: Flax's losses for those steps and for ``STEPS_AFTER_SAVE``
  more steps of the state restored from ``flax_train_state/``.

``tests/test_orbax.py`` uses the data.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "orbax"


def main() -> None:
    import flax.linen as fnn
    import orbax.checkpoint as ocp
    from flax.core import FrozenDict, freeze
    from flax.training import train_state

    sys.path.insert(0, str(HERE.parent))
    from golden import orbax_cases as cases

    OUT.mkdir(exist_ok=True)
    paths = {
        name: cases.describe_paths(tree)
        for name, tree in cases.path_cases(fnn, train_state, freeze).items()
    }
    # One path per line, so a diff of the data reads path by path.
    blocks = [
        f" {json.dumps(name)}: [\n" + ",\n".join(f"  {json.dumps(p)}" for p in entries) + "\n ]"
        for name, entries in paths.items()
    ]
    (OUT / "tree_paths.json").write_text("{\n" + ",\n".join(blocks) + "\n}\n")

    checkpointer = ocp.StandardCheckpointer()
    fresh = cases.make_state(fnn, train_state, freeze)
    variables = freeze({"params": fresh.params, "batch_stats": fresh.batch_stats})
    state, before = cases.train(fresh, cases.STEPS_BEFORE_SAVE)
    for name, tree in (("flax_variables", variables), ("flax_train_state", state)):
        shutil.rmtree(OUT / name, ignore_errors=True)
        checkpointer.save(OUT / name, tree)
    checkpointer.wait_until_finished()

    restored = checkpointer.restore(OUT / "flax_train_state", fresh)
    assert isinstance(restored.params, FrozenDict)
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(a, b)
    _, after = cases.train(restored, cases.STEPS_AFTER_SAVE)
    run = {"losses_before_save": before, "losses_after_restore": after}
    (OUT / "flax_run.json").write_text(json.dumps(run, indent=1) + "\n")
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
