"""Checkpoints under the faults real disks and clusters produce, with real processes and files.

Disk full mid-write, unusable directories, two writers at once, a reader while a writer
saves and prunes, corruption after a clean save, and fsync ordering. The child processes
(checkpoint_crash_worker.py) report what they did line by line; every verdict comes from
those reports and from the files, never from how long anything took.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from checkpoint_crash_worker import tree_for_step
from test_checkpoints import assert_trees_equal, corrupt

from minilinen.errors import (
    CheckpointDirectoryError,
    CheckpointError,
    CheckpointFallbackWarning,
    CheckpointLockedError,
    CheckpointPermissionError,
    CorruptCheckpointError,
    InvalidCheckpointError,
)
from minilinen.training import checkpoints
from minilinen.training.checkpoints import (
    available_steps,
    latest_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)

WORKER = Path(__file__).parent / "checkpoint_crash_worker.py"
NOBODY = 65534


class Saver:
    """A child process saving ``options["steps"]`` (see checkpoint_crash_worker.py)."""

    def __init__(self, ckpt_dir, **options):
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "save", str(ckpt_dir), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def report(self) -> dict:
        """The child's next report line."""
        line = self.proc.stdout.readline()
        assert line, f"the saver exited ({self.proc.wait()}) without reporting"
        return json.loads(line)

    def resume(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> list[dict]:
        """Every report left, once the child has exited cleanly."""
        out, _ = self.proc.communicate()
        assert self.proc.returncode == 0
        return [json.loads(line) for line in out.splitlines()]


def files(ckpt_dir) -> list[str]:
    return sorted(os.listdir(ckpt_dir))


def small(step: int, writer: int = 0) -> dict:
    return tree_for_step(step, writer, size=256)


# --- disk full --------------------------------------------------------------------------


@pytest.mark.slow
def test_disk_full_mid_write_keeps_the_last_good_checkpoint(tmp_path):
    save_checkpoint(tmp_path, small(1), 1, keep=1)
    before = files(tmp_path)
    # The child may write files of at most 64 KiB; the ~2 MB checkpoint of step 2 stops
    # mid-write with EFBIG, as a full disk (ENOSPC) or a quota (EDQUOT) would.
    (out,) = Saver(tmp_path, steps=[2], keep=1, fsize_limit=64 * 1024).finish()
    assert out["error"] == "CheckpointWriteError", out
    assert "File too large" in out["message"] and "pruned nothing" in out["message"]
    # keep=1 pruned nothing for the failed save, no temporary file is left, step 1 restores.
    assert files(tmp_path) == before == ["checkpoint_1"]
    assert_trees_equal(restore_checkpoint(tmp_path, None), small(1))
    # With room on the disk again, the next save goes through and pruning resumes.
    save_checkpoint(tmp_path, small(3), 3, keep=1)
    assert files(tmp_path) == ["checkpoint_3"]


# --- directories that cannot take a checkpoint ---------------------------------------------


@pytest.mark.parametrize("case", ["file", "under_a_file", "link_to_vanished_directory"])
def test_path_that_is_no_directory_is_refused_before_any_work(tmp_path, case):
    (tmp_path / "afile").write_bytes(b"not a directory")
    os.symlink(tmp_path / "scratch_that_was_unmounted", tmp_path / "scratch")
    ckpt_dir = {
        "file": tmp_path / "afile",
        "under_a_file": tmp_path / "afile" / "ckpts",
        "link_to_vanished_directory": tmp_path / "scratch",
    }[case]
    # An unserializable target: the directory error comes first, before any serializing.
    with pytest.raises(CheckpointDirectoryError, match="Cannot save into .*(afile|scratch)") as e:
        save_checkpoint(ckpt_dir, {"a": {1, 2}}, 1)
    assert isinstance(e.value, NotADirectoryError)
    assert files(tmp_path) == ["afile", "scratch"]
    assert (tmp_path / "afile").read_bytes() == b"not a directory"


@pytest.mark.slow
def test_read_only_directory_is_refused_before_any_work(tmp_path):
    # World-traversable (unlike pytest's tmp dirs), so an unprivileged child can reach it.
    root = Path(tempfile.mkdtemp())
    try:
        root.chmod(0o755)
        ro = root / "ro"
        save_checkpoint(ro, small(1), 1)
        ro.chmod(0o555)
        before = files(ro)
        # Root writes through permission bits (os.access rightly says so); run the save as
        # an unprivileged user then, for whom the directory is read-only.
        uid = {"uid": NOBODY} if os.geteuid() == 0 else {}
        (out,) = Saver(ro, steps=[2], unserializable=True, **uid).finish()
        assert out["error"] == "CheckpointPermissionError", out
        assert "read-only" in out["message"]
        assert files(ro) == before
        assert_trees_equal(restore_checkpoint(ro, None), small(1))
        if os.geteuid() == 0:  # honest about root: it can write there, and it does
            assert save_checkpoint(ro, small(2), 2) == str(ro / "checkpoint_2")
        else:
            with pytest.raises(CheckpointPermissionError) as e:
                save_checkpoint(ro, {"a": {1, 2}}, 2)
            assert isinstance(e.value, PermissionError)
    finally:
        (root / "ro").chmod(0o755)
        shutil.rmtree(root)


@pytest.mark.slow
def test_directory_that_vanishes_mid_save(tmp_path):
    ckpt_dir = tmp_path / "ckpts"
    save_checkpoint(ckpt_dir, small(0), 0)
    shutil.rmtree(ckpt_dir)  # gone between saves: created again, as Flax does
    save_checkpoint(ckpt_dir, small(1), 1)
    assert available_steps(ckpt_dir) == [1]
    # Gone while a save is under way (the temporary file is written, not yet renamed).
    saver = Saver(ckpt_dir, steps=[2], size=256, pause=[0, "replace"])
    assert saver.report() == {"paused": "replace", "step": 2}
    shutil.rmtree(ckpt_dir)
    saver.resume()
    (out,) = saver.finish()
    assert out["error"] == "CheckpointWriteError" and "No such file" in out["message"], out
    assert not ckpt_dir.exists()  # nothing was left behind or made up


# --- two writers ------------------------------------------------------------------------


@pytest.mark.slow
def test_second_writer_is_refused_while_the_first_saves(tmp_path):
    first = Saver(tmp_path, steps=[5], writer=1, size=256, pause=[0, "replace"])
    assert first.report() == {"paused": "replace", "step": 5}  # holding the lock, mid-save
    own_tmp = [n for n in files(tmp_path) if n.endswith(".tmp")]
    # This process is the second writer: the same step, and a different one, at once.
    for step in (5, 6):
        with pytest.raises(CheckpointLockedError, match="another save is under way"):
            save_checkpoint(tmp_path, small(step, writer=2), step)
    assert files(tmp_path) == own_tmp  # the refused writer wrote nothing
    first.resume()
    assert first.finish() == [{"step": 5, "saved": str(tmp_path / "checkpoint_5")}]
    assert files(tmp_path) == ["checkpoint_5"]
    assert_trees_equal(restore_checkpoint(tmp_path, None), small(5, writer=1))
    # Saves that do not overlap follow Flax's rules: the same step again is refused ...
    with pytest.raises(InvalidCheckpointError):
        save_checkpoint(tmp_path, small(5, writer=2), 5)
    # ... unless overwrite=True, and then the last complete write wins.
    save_checkpoint(tmp_path, small(5, writer=2), 5, overwrite=True)
    assert_trees_equal(restore_checkpoint(tmp_path, None), small(5, writer=2))


@pytest.mark.slow
def test_two_writers_racing_never_mix_their_files(tmp_path):
    """Two processes save steps 0..39 at once (a job started twice). Whatever the
    interleaving, each save is done or refused by name, no step is saved by both, and
    every file is exactly one writer's."""
    writers = {
        w: Saver(tmp_path, steps=list(range(40)), writer=w, size=4096, keep=100) for w in (1, 2)
    }
    saved_by = {}
    for w, saver in writers.items():
        reports = saver.finish()
        assert [r["step"] for r in reports] == list(range(40))
        for r in reports:
            if "saved" in r:
                assert r["step"] not in saved_by, r
                saved_by[r["step"]] = w
            else:
                assert r["error"] in ("CheckpointLockedError", "InvalidCheckpointError"), r
    assert saved_by  # whoever took the lock first saved step 0 at least
    assert available_steps(tmp_path) == sorted(saved_by)
    for step, w in saved_by.items():
        restored = restore_checkpoint(tmp_path, None, step=step)
        assert_trees_equal(restored, tree_for_step(step, w, size=4096))
    assert not [n for n in files(tmp_path) if n.endswith(".tmp")]


# --- a reader while a writer saves and prunes ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("reader", "window"), [("restore", "listing"), ("restore", "opening"), ("latest", "listing")]
)
def test_file_pruned_under_the_reader(tmp_path, monkeypatch, reader, window):
    """The writer (keep=1) saves step 1 and prunes step 0 exactly while the reader is inside
    its listing of the directory, or between listing it and opening checkpoint 0."""
    writer = Saver(tmp_path, steps=[0, 1], size=256, keep=1, handshake=True)
    assert "saved" in writer.report()
    module, name = (os, "listdir") if window == "listing" else (checkpoints, "open")
    real = getattr(module, name, open)
    met = []

    def let_the_writer_prune(where, *args):
        if met:
            return real(where, *args)
        met.append(os.path.basename(where))
        listed = real(where, *args) if window == "listing" else None
        writer.resume()
        assert "saved" in writer.report()  # step 1 is in, step 0 is gone
        return listed if window == "listing" else real(where, *args)

    monkeypatch.setattr(module, name, let_the_writer_prune, raising=False)
    if reader == "restore":
        found = restore_checkpoint(tmp_path, None)
    else:
        found = latest_checkpoint(tmp_path)
    monkeypatch.undo()
    assert met == [tmp_path.name if window == "listing" else "checkpoint_0"]
    assert not (tmp_path / "checkpoint_0").exists()
    if reader == "restore":
        assert_trees_equal(found, small(1))
    else:
        assert found == str(tmp_path / "checkpoint_1")
    writer.resume()
    writer.finish()


@pytest.mark.slow
def test_reader_loops_while_a_writer_saves_and_prunes(tmp_path):
    """After each of 30 saves (keep=2) the writer starts the next one, and the reader
    restores and looks up the latest checkpoint meanwhile: always a complete checkpoint of
    the step just saved or the one being saved, never going back."""
    writer = Saver(tmp_path, steps=list(range(30)), size=4096, keep=2, handshake=True)
    newest = -1
    for step in range(30):
        assert writer.report()["saved"] == str(tmp_path / f"checkpoint_{step}")
        writer.resume()  # save step + 1 and prune step - 1 while we read
        for _ in range(5):
            restored = restore_checkpoint(tmp_path, None)
            assert restored["step"] in (step, step + 1) and restored["step"] >= newest
            newest = restored["step"]
            assert_trees_equal(restored, tree_for_step(newest, size=4096))
            latest = latest_checkpoint(tmp_path)
            assert latest in (str(tmp_path / f"checkpoint_{s}") for s in (step, step + 1))
    writer.finish()
    assert available_steps(tmp_path) == [28, 29]


# --- corruption after a clean save ------------------------------------------------------------


@pytest.mark.parametrize("how", ["flip_payload", "truncate"])
def test_corrupt_latest_is_named_and_fallback_says_what_it_used(tmp_path, how):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, small(step), step, keep=3)
    corrupt(str(tmp_path / "checkpoint_3"), how)
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint_3 is corrupt.*allow_fallback"):
        restore_checkpoint(tmp_path, None)
    with pytest.warns(
        CheckpointFallbackWarning,
        match=r"Restored .*checkpoint_2, .*skipped corrupt .*checkpoint_3",
    ):
        restored = restore_checkpoint(tmp_path, None, allow_fallback=True)
    assert_trees_equal(restored, small(2))
    # An explicit step is never swapped for another.
    with pytest.raises(CorruptCheckpointError, match="checkpoint_3"):
        restore_checkpoint(tmp_path, None, step=3, allow_fallback=True)
    # Nothing corrupt: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert restore_checkpoint(tmp_path, None, step=1, allow_fallback=True)["step"] == 1
    # Nothing intact: the newest corrupt file is reported.
    corrupt(str(tmp_path / "checkpoint_2"), how)
    corrupt(str(tmp_path / "checkpoint_1"), how)
    with pytest.raises(CorruptCheckpointError, match="checkpoint_3") as e:
        restore_checkpoint(tmp_path, None, allow_fallback=True)
    assert e.value.filename == str(tmp_path / "checkpoint_3")


# --- fsync --------------------------------------------------------------------------------


def test_saved_file_is_fsynced_then_renamed_then_its_directory_fsynced(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):  # pass-through spies: record, then make the real call
        st = os.fstat(fd)
        calls.append(("fsync", "dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
        return real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", os.path.basename(src), os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = save_checkpoint(tmp_path, {"w": np.arange(3)}, 7)
    monkeypatch.undo()
    assert calls == [
        ("fsync", "file", os.stat(path).st_ino),  # the data, under its temporary name
        ("replace", f".checkpoint_7.{os.getpid()}.tmp", "checkpoint_7"),
        ("fsync", "dir", os.stat(tmp_path).st_ino),  # the rename itself
    ]


def test_checkpoint_errors_keep_their_message():
    # OSError subclasses: setting ``filename`` must not replace the message.
    err = CheckpointError("the message")
    err.filename = "/some/path"
    assert str(err) == "the message"
