"""Make the serialization golden data with the real Flax (not run by CI).

How the data was made: with flax 0.12.8, jax 0.10.2, optax 0.2.8 on CPU (the
``bench`` extra), ``.venv/bin/python tests/golden/make_golden_serialization.py``
writes into ``serialization/``:

- ``{case}.msgpack``: ``flax.serialization.to_bytes`` of every tree in
  ``serialization_cases.make_cases`` built with Flax's TrainState and ``freeze``
  (``msgpack_serialize`` for the cases in ``MSGPACK_SERIALIZE_CASES``; Flax's
  ``MAX_CHUNK_SIZE`` lowered to ``CHUNKED_MAX_CHUNK_SIZE`` for ``CHUNKED_CASES``);
- ``seed004.msgpack`` and ``seed004.json``: the bytes seed 004 prints and the
  parameter values it prints (8 significant digits), parsed from
  ``../shared/seeds/004_*.txt``; Flax's ``from_bytes`` of the bytes is checked to
  give those values and its ``to_bytes`` of them to give the bytes again;
- ``training_losses.json``: the loss of every step of ``run_training`` with
  ``flax.linen`` and Flax's TrainState;
- ``checkpoint_scenarios.json``: ``checkpoint_scenarios.replay`` with Flax's
  legacy (non-Orbax) ``flax.training.checkpoints``: which saves fail and which
  files remain after each, for ``keep``, ``keep_every_n_steps``, ``overwrite``,
  float steps and prefixes;
- ``flax_legacy_checkpoint_7``: a checkpoint file Flax's legacy writer made of the
  ``train_state_adam`` case.

It also checks that Flax's ``from_bytes`` reads minilinen's bytes of every case.
``tests/test_serialization_golden.py``, ``tests/test_train_state.py`` and
``tests/test_checkpoints.py`` use the data.
"""

from __future__ import annotations

import ast
import glob
import json
import re
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "serialization"
SEED = HERE.parents[2] / "shared" / "seeds"


def _seed004() -> tuple[bytes, dict]:
    text = open(glob.glob(str(SEED / "004_*.txt"))[0], encoding="utf-8").read()
    out = text[text.index("    Dict output") :]
    literal = re.search(r"Bytes output\n\s*(b'.*')\n", out).group(1)
    data = ast.literal_eval(literal)
    values = {}
    for name in ("bias", "kernel"):
        body = re.search(rf"'{name}': Array\((\[.*?\]),\s*dtype=float32\)", out, re.S).group(1)
        values[name] = re.sub(r"\s+", " ", body)
    return data, values


def _seed_tree(values: dict) -> dict:
    arrays = {k: np.array(ast.literal_eval(v), np.float32) for k, v in values.items()}
    return {"params": {"bias": arrays["bias"], "kernel": arrays["kernel"]}}


def main() -> None:
    import flax.linen as fnn
    from flax import serialization
    from flax.core import freeze
    from flax.training import train_state

    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE.parents[1]))
    import minilinen.serialization as mser
    import minilinen.serialization.encode as mencode
    from golden.serialization_cases import (
        CHUNKED_CASES,
        CHUNKED_MAX_CHUNK_SIZE,
        MSGPACK_SERIALIZE_CASES,
        make_cases,
        run_training,
    )
    from minilinen.core import freeze as mfreeze
    from minilinen.training.train_state import TrainState as MTrainState

    OUT.mkdir(exist_ok=True)
    data, values = _seed004()
    # The seed prints 8 significant digits, not always enough for the exact float32,
    # so the values are checked to print precision and the bytes through a round trip.
    printed = freeze(_seed_tree(values))
    decoded = serialization.from_bytes(printed, data)
    for a, b in zip(jax.tree_util.tree_leaves(decoded), jax.tree_util.tree_leaves(printed)):
        np.testing.assert_allclose(a, b, rtol=2.5e-7)
    assert serialization.to_bytes(decoded) == data, "Flax does not reproduce seed 004's bytes"
    (OUT / "seed004.msgpack").write_bytes(data)
    (OUT / "seed004.json").write_text(json.dumps(values, indent=1) + "\n")

    flax_cases = make_cases(train_state.TrainState, freeze)
    ours = make_cases(MTrainState, mfreeze)
    default_chunk = serialization.MAX_CHUNK_SIZE
    for name, tree in flax_cases.items():
        chunk = CHUNKED_MAX_CHUNK_SIZE if name in CHUNKED_CASES else default_chunk
        serialization.MAX_CHUNK_SIZE = mencode.MAX_CHUNK_SIZE = chunk
        try:
            if name in MSGPACK_SERIALIZE_CASES:
                data = serialization.msgpack_serialize(tree)
                mine = mser.msgpack_serialize(ours[name])
            else:
                data = serialization.to_bytes(tree)
                mine = mser.to_bytes(ours[name])
                # Flax reads minilinen's bytes back into its own template.
                back = serialization.from_bytes(tree, mine)
                leaves = zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(tree))
                assert all(np.array_equal(a, b) for a, b in leaves), name
        finally:
            serialization.MAX_CHUNK_SIZE = mencode.MAX_CHUNK_SIZE = default_chunk
        (OUT / f"{name}.msgpack").write_bytes(data)
        print(f"{name}: {len(data)} bytes, minilinen's equal: {mine == data}")

    from flax import config as flax_config
    from flax.training import checkpoints

    from golden.checkpoint_scenarios import replay

    flax_config.update("flax_use_orbax_checkpointing", False)
    with tempfile.TemporaryDirectory() as root:
        records = replay(
            checkpoints.save_checkpoint,
            checkpoints.restore_checkpoint,
            checkpoints.latest_checkpoint,
            root,
        )
        legacy = checkpoints.save_checkpoint(
            root, make_cases(train_state.TrainState, freeze)["train_state_adam"], 7
        )
        (OUT / "flax_legacy_checkpoint_7").write_bytes(Path(legacy).read_bytes())
    (OUT / "checkpoint_scenarios.json").write_text(json.dumps(records, indent=1) + "\n")

    losses = run_training(fnn, train_state.TrainState)
    (OUT / "training_losses.json").write_text(json.dumps({"losses": losses}, indent=1) + "\n")
    print("losses", losses[0], "->", losses[-1])


if __name__ == "__main__":
    main()
