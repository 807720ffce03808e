"""Restores an Orbax checkpoint of a minilinen TrainState into the real Flax, run by
tests/test_orbax.py in a fresh process so that the real ``flax`` never shares a
process with minilinen's ``install_as_flax`` aliases.

    orbax_flax_worker.py CHECKPOINT_DIR

Restores into Flax's own template of ``golden/orbax_cases``'s state, trains
``STEPS_AFTER_SAVE`` more steps with Flax and prints one JSON line: the types it
got back, the restored step and the losses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import flax.linen as fnn
import jax
import orbax.checkpoint as ocp
from flax.core import FrozenDict, freeze
from flax.training import train_state

sys.path.insert(0, str(Path(__file__).resolve().parent))
from golden import orbax_cases as cases  # noqa: E402


def main() -> None:
    template = cases.make_state(fnn, train_state, freeze)
    restored = ocp.StandardCheckpointer().restore(sys.argv[1], template)
    same_structure = jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(
        template
    )
    _, losses = cases.train(restored, cases.STEPS_AFTER_SAVE)
    report = {
        "state_type": type(restored).__name__,
        "params_frozen": isinstance(restored.params, FrozenDict),
        "batch_stats_frozen": isinstance(restored.batch_stats, FrozenDict),
        "same_structure": same_structure,
        "step": int(restored.step),
        "losses": losses,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
