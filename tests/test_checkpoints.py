"""Checkpoints: Flax's keep/overwrite semantics, checksums, fallback, and SIGKILL mid-save."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from checkpoint_crash_worker import tree_for_step
from golden.checkpoint_scenarios import replay
from golden.serialization_cases import make_cases

from minilinen import serialization
from minilinen.core import freeze
from minilinen.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    CorruptDataError,
    InvalidCheckpointError,
    SerializationTypeError,
    StateDictMismatchError,
)
from minilinen.training import TrainState
from minilinen.training.checkpoints import (
    MAGIC,
    available_steps,
    latest_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)

GOLDEN = Path(__file__).parent / "golden" / "serialization"
WORKER = Path(__file__).parent / "checkpoint_crash_worker.py"


def make_state(seed: int = 0) -> TrainState:
    r = np.random.default_rng(seed)
    params = freeze({"params": {"w": r.normal(size=(3, 4)).astype(np.float32)}})
    state = TrainState.create(apply_fn=None, params=params, tx=optax.adam(1e-2))
    return state.apply_gradients(grads=jax.tree_util.tree_map(np.ones_like, params))


def assert_trees_equal(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_and_raw_state_dict(tmp_path):
    state = make_state()
    path = save_checkpoint(tmp_path, state, 3)
    assert path == str(tmp_path / "checkpoint_3")
    template = make_state(seed=1)
    restored = restore_checkpoint(tmp_path, template)
    assert isinstance(restored, TrainState) and restored.step == 1
    assert_trees_equal(restored.params, state.params)
    assert_trees_equal(restored.opt_state, state.opt_state)
    raw = restore_checkpoint(tmp_path, None)
    assert type(raw) is dict and list(raw) == ["step", "params", "opt_state"]
    assert_trees_equal(raw, serialization.msgpack_restore(serialization.to_bytes(state)))


def test_file_is_header_plus_flax_bytes(tmp_path):
    state = make_state()
    data = Path(save_checkpoint(tmp_path, state, 1)).read_bytes()
    assert data.startswith(MAGIC)
    assert data[52:] == serialization.to_bytes(state)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temp file left


def test_semantics_match_flax(tmp_path):
    """keep, keep_every_n_steps, overwrite, float steps and prefixes, replayed against Flax."""
    expected = json.loads((GOLDEN / "checkpoint_scenarios.json").read_text())
    assert replay(save_checkpoint, restore_checkpoint, latest_checkpoint, str(tmp_path)) == expected


def test_outdated_step_is_a_named_error(tmp_path):
    save_checkpoint(tmp_path, {"a": 1}, 5)
    with pytest.raises(InvalidCheckpointError, match="step 5"):
        save_checkpoint(tmp_path, {"a": 2}, 4)
    assert restore_checkpoint(tmp_path, None) == {"a": 1}


def test_reads_flax_legacy_checkpoint():
    path = GOLDEN / "flax_legacy_checkpoint_7"
    assert not path.read_bytes().startswith(MAGIC)
    template = make_cases(TrainState, freeze)["train_state_adam"]
    restored = restore_checkpoint(path, template)
    assert restored.step == 2
    assert_trees_equal(restored.opt_state, template.opt_state)


def test_nothing_to_restore_returns_the_target(tmp_path):
    target = {"x": 1}
    assert restore_checkpoint(tmp_path, target) is target
    assert restore_checkpoint(tmp_path / "missing", target) is target
    assert latest_checkpoint(tmp_path / "missing") is None
    assert available_steps(tmp_path) == []


def test_missing_step_is_a_named_error(tmp_path):
    save_checkpoint(tmp_path, {"a": 1}, 2)
    with pytest.raises(CheckpointNotFoundError, match=r"checkpoint_7.*\[2\.0\]") as info:
        restore_checkpoint(tmp_path, None, step=7)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)


def test_template_mismatch_names_file_and_path(tmp_path):
    save_checkpoint(tmp_path, {"params": {"w": np.ones(3, np.float32)}}, 1)
    with pytest.raises(StateDictMismatchError, match=r"checkpoint_1.*'params/w'.*\(2,\).*\(3,\)"):
        restore_checkpoint(tmp_path, {"params": {"w": np.ones(2, np.float32)}})


def corrupt(path: str, how: str) -> None:
    data = bytearray(Path(path).read_bytes())
    if how == "flip_payload":
        data[-3] ^= 0x10
    elif how == "flip_checksum":
        data[30] ^= 0x01
    elif how == "truncate":
        del data[len(data) // 2 :]
    elif how == "truncate_header":
        del data[20:]
    elif how == "append":
        data += b"\x00"
    elif how == "version":
        data[8] = 99
    elif how == "empty":
        data.clear()
    Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize(
    "how",
    ["flip_payload", "flip_checksum", "truncate", "truncate_header", "append", "version", "empty"],
)
def test_corrupt_file_names_itself_and_earlier_step_restores(tmp_path, how):
    for step in (1, 2):
        save_checkpoint(tmp_path, {"step": step, "w": np.full(64, step, np.float32)}, step, keep=2)
    latest = latest_checkpoint(tmp_path)
    corrupt(latest, how)
    with pytest.raises(CorruptCheckpointError, match="checkpoint_2") as info:
        restore_checkpoint(tmp_path, None)
    assert info.value.filename == latest
    assert isinstance(info.value, CorruptDataError) and isinstance(info.value, CheckpointError)
    # The fallback: the previous step is intact.
    steps = available_steps(tmp_path)
    restored = restore_checkpoint(tmp_path, None, step=steps[-2])
    assert restored["step"] == 1 and np.all(restored["w"] == 1)


def test_corrupt_legacy_file_is_named(tmp_path):
    (tmp_path / "checkpoint_4").write_bytes(b"\x82\xa1a")
    with pytest.raises(CorruptCheckpointError, match="checkpoint_4"):
        restore_checkpoint(tmp_path, None)


def test_directory_checkpoint_is_a_named_error(tmp_path):
    (tmp_path / "orbax_ckpt").mkdir()
    (tmp_path / "orbax_ckpt" / "checkpoint_3").mkdir()  # a directory is not listed
    assert latest_checkpoint(tmp_path / "orbax_ckpt") is None
    with pytest.raises(CheckpointError, match="directory"):
        restore_checkpoint(tmp_path / "orbax_ckpt", None, step=3)


def test_stale_temp_files_are_removed_by_the_next_save(tmp_path):
    stale = tmp_path / ".checkpoint_9.12345.tmp"
    stale.write_bytes(b"half a file")
    save_checkpoint(tmp_path, {"a": 1}, 10)
    assert not stale.exists()
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_10")


def test_unserializable_target_writes_nothing(tmp_path):
    with pytest.raises(SerializationTypeError):
        save_checkpoint(tmp_path, {"a": {1, 2}}, 1)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_partial_checkpoint(tmp_path):
    """A child saving in a loop is killed at random moments 60 times; after every kill
    the latest checkpoint restores exactly, and so does every other one listed."""
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    rng = random.Random(0)
    killed_mid_write = 0
    last_step = -1
    try:
        for _ in range(60):
            worker.stdin.write("fork\n")
            worker.stdin.flush()
            pid = int(worker.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.12))
            os.kill(pid, signal.SIGKILL)
            assert worker.stdout.readline().split()[0] == "died"
            if any(n.endswith(".tmp") for n in os.listdir(tmp_path)):
                killed_mid_write += 1
            steps = available_steps(tmp_path)
            assert len(steps) <= 4  # keep=3, plus one while the oldest is being pruned
            for step in steps:
                restored = restore_checkpoint(tmp_path, None, step=step)
                assert_trees_equal(restored, tree_for_step(step))
            if steps:
                assert steps[-1] >= last_step
                last_step = steps[-1]
                assert restore_checkpoint(tmp_path, None)["step"] == last_step
    finally:
        worker.stdin.close()
        worker.wait(timeout=30)
    assert last_step >= 30  # the children made real progress between kills
    assert killed_mid_write >= 5  # and many kills landed inside a save
