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


# Where a child pauses inside a save before it is killed; None: after a random delay.
KILL_AT = [None, "fsync_file", "replace", "fsync_dir", "remove"]


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_partial_checkpoint(tmp_path):
    """60 children saving in a loop are killed with SIGKILL, each after a chosen number of
    finished saves: 48 stopped at a chosen point inside the next save (before the file's
    fsync, before the rename, before the directory's fsync, while pruning), 12 after a random
    delay into it. After every kill, every listed checkpoint restores exactly, the newest save a
    child reported is there (or three newer ones that pruned it), nothing newer than what a
    child began is, and a temporary file is left only by a save that was cut short (the next
    save removes it)."""
    forker = subprocess.Popen(
        [sys.executable, str(WORKER), "forker", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    rng = random.Random(0)
    saved = begun = -1  # the newest step any child reported as saved / as begun
    steps = []
    total_saved = requested = 0
    try:
        for i in range(60):
            event = KILL_AT[i % len(KILL_AT)]
            if event == "remove" and len(available_steps(tmp_path)) < 3:
                event = "fsync_dir"  # keep=3: a save prunes only once three are there
            n = rng.randrange(3)  # finished saves before the one that is cut short
            requested += n
            spec = json.dumps(event and {"save": n, "event": event})
            forker.stdin.write(f"fork {spec}\n")
            forker.stdin.flush()
            pid = paused = None
            child_saved = 0
            kill_due = False
            for line in forker.stdout:
                kind, *args = line.split()
                if kind == "pid":
                    pid = int(args[0])
                elif kind == "begin":
                    begun = int(args[0])
                    if event is None and child_saved == n:
                        kill_due = True
                        time.sleep(rng.uniform(0.0, 0.02))  # where it lands is not asserted
                elif kind == "saved":
                    saved = int(args[0])
                    child_saved += 1
                    total_saved += 1
                elif kind == "paused":
                    paused = (args[0], int(args[1]))
                    kill_due = True
                elif kind == "died":
                    status = int(args[0])
                    break
                if kill_due and pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    kill_due = False
            # It died of the kill, not of an error of its own.
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, line
            before, steps = steps, available_steps(tmp_path)
            # keep=3, plus the one a save cut short before its pruning was done.
            assert len(steps) <= (3 if child_saved else max(3, len(before))) + 1
            for step in steps:
                assert_trees_equal(
                    restore_checkpoint(tmp_path, None, step=step), tree_for_step(step)
                )
            if saved >= 0:
                # The newest reported save is there, unless newer saves pruned it (keep=3):
                # a child killed once its checkpoint is in place but before it says so
                # leaves one unreported step, and three such children in a row push it out.
                assert saved in steps or sum(step > saved for step in steps) >= 3, (saved, steps)
                assert restore_checkpoint(tmp_path, None)["step"] == steps[-1]
            assert not steps or steps[-1] <= begun
            tmps = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
            if child_saved:  # a save of this child returned: it removed older temporary files
                assert all(name.endswith(f".{pid}.tmp") for name in tmps), tmps
            if paused:
                point, step = paused
                own_tmp = f".checkpoint_{step}.{pid}.tmp"
                renamed = point in ("fsync_dir", "remove")
                assert (own_tmp in tmps) is not renamed and (step in steps) is renamed
                assert (steps[-1] if steps else -1) == (step if renamed else step - 1)
    finally:
        forker.stdin.close()
        forker.wait()
    assert total_saved >= requested  # every child finished the saves it was given
