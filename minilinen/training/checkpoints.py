"""Directory checkpoints that are never half-written and are checked when read.

A checkpoint of step ``s`` is the file ``{ckpt_dir}/{prefix}{s}``. It is written
under a temporary name (``.{prefix}{s}.{pid}.tmp``), flushed to disk with
``fsync``, renamed over its final name in one atomic step, and the directory is
fsynced so the rename itself survives a power cut. A reader therefore sees
either the whole file or no file; a process killed mid-save leaves at most a
temporary file, which the next save removes. A save that fails (disk full, a
quota) removes its temporary file and prunes nothing. A save holds an exclusive
``flock`` on the directory, so two processes never save into it at once: the
second is refused with ``CheckpointLockedError``.

File format, version 1 (all integers little-endian)::

    offset  size  field
    0       8     magic  b"\\xc1mlckpt"  (0xc1 never starts msgpack data)
    8       4     format version, 1
    12      8     payload length in bytes
    20      32    SHA-256 of the payload
    52      ...   payload: exactly ``serialization.to_bytes(target)`` (Flax's bytes)

Restoring verifies the magic, version, length and checksum before parsing and
raises ``CorruptCheckpointError`` naming the file (its ``filename`` attribute
holds the path) when any of them fails; the caller can then restore an earlier
step (``available_steps`` lists them) or pass ``allow_fallback=True``. Files
without the magic are read as plain Flax msgpack checkpoints, unverified, so
Flax's legacy checkpoints load.

``keep``, ``keep_every_n_steps`` and ``overwrite`` prune as Flax's
``flax.training.checkpoints`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import struct
import warnings
from typing import Any

from minilinen.errors import (
    CheckpointDirectoryError,
    CheckpointError,
    CheckpointFallbackWarning,
    CheckpointLockedError,
    CheckpointNotFoundError,
    CheckpointPermissionError,
    CheckpointWriteError,
    CorruptCheckpointError,
    CorruptDataError,
    InvalidCheckpointError,
    StateDictMismatchError,
)
from minilinen.serialization.decode import msgpack_restore
from minilinen.serialization.encode import serialize_pieces
from minilinen.serialization.state_dict import from_state_dict, to_state_dict

__all__ = ["save_checkpoint", "restore_checkpoint", "latest_checkpoint", "available_steps"]

MAGIC = b"\xc1mlckpt"
VERSION = 1
_HEADER = struct.Struct("<8sIQ32s")
_STEP_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")
_INT_RE = re.compile(r"[-+]?\d+\Z")


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    target: Any,
    step: int | float,
    prefix: str = "checkpoint_",
    keep: int = 1,
    overwrite: bool = False,
    keep_every_n_steps: int | None = None,
) -> str:
    """Atomically writes ``target`` as checkpoint ``step`` and returns its path.

    When it returns, the checkpoint is on disk: the file is fsynced before it is
    renamed into place and the directory after, so neither a crash nor a power
    cut loses it or leaves part of it.

    Two writers: one process at a time saves into a directory (it holds an
    exclusive ``flock`` on it); a save meanwhile from another process (a job
    started twice) is refused with ``CheckpointLockedError`` and writes nothing.
    Saves that do not overlap follow Flax's rules: a step at or below the latest
    one is refused with ``InvalidCheckpointError`` unless ``overwrite``, and then
    the last complete write wins. Where the filesystem cannot lock a directory
    (some NFS mounts) saves are not refused, and the atomic rename alone keeps
    every file whole: the last complete write wins.

    Args:
      ckpt_dir: the directory (created if missing).
      target: any serializable pytree (a TrainState, a dict of params, ...).
      step: the step number; it must exceed every existing step unless ``overwrite``.
      prefix: file-name prefix of this series of checkpoints.
      keep: how many of the newest checkpoints to keep; older ones are deleted.
      overwrite: allow replacing step ``step``; checkpoints newer than it are deleted.
      keep_every_n_steps: also keep an old checkpoint whenever at least this many
        steps separate it from the last old one kept.

    Raises:
      CheckpointDirectoryError, CheckpointPermissionError: ``ckpt_dir`` is a file,
        a link to a vanished directory, or not writable; raised before any work.
      CheckpointLockedError: another process is saving into ``ckpt_dir``.
      InvalidCheckpointError: ``step`` is not after the latest (without ``overwrite``).
      CheckpointWriteError: writing failed (disk full, a quota or file-size limit,
        an I/O error). Nothing is pruned and no temporary file is left, so every
        earlier checkpoint still restores.
    """
    ckpt_dir = os.fspath(ckpt_dir)
    dir_fd = _open_and_lock(ckpt_dir)
    try:
        path = os.path.join(ckpt_dir, f"{prefix}{step}")
        existing = _checkpoints(ckpt_dir, prefix)
        if not overwrite and (os.path.exists(path) or (existing and existing[-1][0] >= step)):
            raise InvalidCheckpointError(
                f"Not saving step {step} to {path}: the directory already holds step "
                f"{existing[-1][0] if existing else step}, at or after it. Pass overwrite=True "
                "to replace it (newer checkpoints are then deleted)."
            )
        pieces = serialize_pieces(to_state_dict(target))
        digest = hashlib.sha256()
        for piece in pieces:
            digest.update(piece)
        size = sum(memoryview(piece).nbytes for piece in pieces)
        tmp = os.path.join(ckpt_dir, f".{prefix}{step}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(_HEADER.pack(MAGIC, VERSION, size, digest.digest()))
                f.writelines(pieces)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            if dir_fd is not None:
                os.fsync(dir_fd)  # makes the rename itself durable
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            if not isinstance(e, OSError):
                raise
            raise CheckpointWriteError(
                f"Could not save {path}: {e.strerror or e}. This save pruned nothing and left no "
                "file behind (a full disk or a quota? Free some space and save again)."
            ) from e
        _prune(ckpt_dir, prefix, step, keep, overwrite, keep_every_n_steps)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)  # also releases the lock
    return path


def restore_checkpoint(
    ckpt_dir: str | os.PathLike,
    target: Any,
    step: int | float | None = None,
    prefix: str = "checkpoint_",
    parallel: bool = True,
    *,
    allow_fallback: bool = False,
) -> Any:
    """Restores the latest checkpoint (or ``step``) into ``target``'s structure.

    Safe while another process saves and prunes: a checkpoint deleted between
    listing and opening is skipped for the newest one still there.

    Args:
      ckpt_dir: the checkpoint directory, or the path of one checkpoint file.
      target: the template; None returns the raw state dict instead.
      step: the step to restore; None means the latest. Without any checkpoint
        (and ``step`` None), ``target`` is returned unchanged, as Flax does.
      prefix: file-name prefix of this series of checkpoints.
      parallel: accepted for Flax compatibility; reading is a single ``read``.
      allow_fallback: with ``step`` None, skip corrupt checkpoints and restore the
        newest intact one, warning (``CheckpointFallbackWarning``) which files were
        skipped and which was restored. Off, a corrupt latest checkpoint raises
        ``CorruptCheckpointError`` naming the file.
    """
    ckpt_dir = os.fspath(ckpt_dir)
    if step is not None:
        path = os.path.join(ckpt_dir, f"{prefix}{step}")
        state = _load(path, prefix)
    elif os.path.isdir(ckpt_dir):
        found = _load_latest(ckpt_dir, prefix, allow_fallback)
        if found is None:
            return target
        path, state = found
    elif os.path.exists(ckpt_dir):
        path, state = ckpt_dir, _load(ckpt_dir, prefix)
    else:
        return target
    if target is None:
        return state
    try:
        return from_state_dict(target, state)
    except StateDictMismatchError as e:
        raise StateDictMismatchError(f"Restoring {path}: {e}") from e


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint_") -> str | None:
    """The path of the newest checkpoint in ``ckpt_dir``, or None if there is none."""
    found = _checkpoints(os.fspath(ckpt_dir), prefix)
    return found[-1][1] if found else None


def available_steps(
    ckpt_dir: str | os.PathLike, prefix: str = "checkpoint_", step_type: type = int
) -> list:
    """The steps of the checkpoints in ``ckpt_dir``, oldest first."""
    return [step_type(s) for s, _ in _checkpoints(os.fspath(ckpt_dir), prefix)]


def _checkpoints(ckpt_dir: str, prefix: str) -> list[tuple[int | float, str]]:
    """``(step, path)`` of every checkpoint file with ``prefix``, by step."""
    try:
        names = os.listdir(ckpt_dir)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        suffix = name[len(prefix) :]
        if not name.startswith(prefix) or not _STEP_RE.match(suffix):
            continue
        path = os.path.join(ckpt_dir, name)
        number = int(suffix) if _INT_RE.match(suffix) else float(suffix)
        if math.isfinite(number) and os.path.isfile(path):
            found.append((number, path))
        elif not os.path.lexists(path):  # pruned by a writer since we listed: list again
            return _checkpoints(ckpt_dir, prefix)
    found.sort()  # by step, then path
    return found


def _load_latest(ckpt_dir: str, prefix: str, allow_fallback: bool) -> tuple[str, Any] | None:
    """``(path, state)`` of the newest checkpoint that reads back; None if there is none."""
    skipped: dict[str, CorruptCheckpointError] = {}  # path -> why, newest first
    while True:
        paths = [p for _, p in reversed(_checkpoints(ckpt_dir, prefix)) if p not in skipped]
        if not paths:
            if skipped:
                raise next(iter(skipped.values()))  # nothing intact: report the newest
            return None
        try:
            state = _load(paths[0], prefix)
        except FileNotFoundError:
            continue  # pruned by a writer between listing and opening: list again
        except CorruptCheckpointError as e:
            if not allow_fallback:
                raise
            skipped[paths[0]] = e
            continue
        if skipped:
            corrupt = ", ".join(skipped)
            msg = f"Restored {paths[0]}, the newest intact checkpoint; skipped corrupt {corrupt}."
            warnings.warn(msg, CheckpointFallbackWarning, stacklevel=3)
        return paths[0], state


def _load(path: str, prefix: str) -> Any:
    """The state dict in the checkpoint file ``path``, verified and decoded."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:  # also when a writer pruned it a moment ago
        steps = available_steps(os.path.dirname(path), prefix, float)
        msg = f"No checkpoint {path}: it does not exist. Available steps: {steps}."
        raise CheckpointNotFoundError(msg) from None
    except IsADirectoryError:
        raise CheckpointError(
            f"{path} is a directory (an Orbax checkpoint?); minilinen reads single-file "
            "checkpoints written by save_checkpoint or by Flax's legacy format."
        ) from None
    payload = memoryview(data)
    if not data:
        raise _corrupt(path, "the file is empty")
    if payload[: len(MAGIC)] == MAGIC:  # else a legacy Flax checkpoint: bare msgpack bytes
        if len(data) < _HEADER.size:
            raise _corrupt(path, f"the file ends inside its {_HEADER.size}-byte header")
        _, version, size, digest = _HEADER.unpack_from(data)
        if version != VERSION:
            raise _corrupt(path, f"unknown format version {version} (this reader knows {VERSION})")
        payload = payload[_HEADER.size :]
        if size != len(payload):
            raise _corrupt(path, f"its header announces {size} payload bytes, not {len(payload)}")
        if hashlib.sha256(payload).digest() != digest:
            raise _corrupt(path, "the SHA-256 checksum of its contents does not match")
    try:
        return msgpack_restore(payload)
    except CorruptDataError as e:
        raise _corrupt(path, str(e)) from e


def _corrupt(path: str, reason: str) -> CorruptCheckpointError:
    err = CorruptCheckpointError(
        f"Checkpoint {path} is corrupt: {reason}. Restore an earlier step with "
        "restore_checkpoint(..., step=...) (available_steps() lists them), or pass "
        "allow_fallback=True to restore the newest intact one."
    )
    err.filename = path
    return err


def _open_and_lock(ckpt_dir: str) -> int | None:
    """Creates and checks ``ckpt_dir``; returns a descriptor holding its lock."""
    try:
        os.makedirs(ckpt_dir, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        msg = "it, or a folder above it, is a file or a link to a directory that is gone"
        raise CheckpointDirectoryError(f"Cannot save into {ckpt_dir}: {msg}.") from None
    except OSError as e:
        raise CheckpointPermissionError(f"Cannot create {ckpt_dir}: {e.strerror}.") from None
    if not os.access(ckpt_dir, os.W_OK | os.X_OK):  # a read-only directory or filesystem
        raise CheckpointPermissionError(f"Cannot save into {ckpt_dir}: it is read-only here.")
    try:
        fd = os.open(ckpt_dir, os.O_RDONLY)
    except OSError:
        return None  # platforms that cannot open a directory (Windows) can't lock or fsync it
    import fcntl  # POSIX only; imported here so that the module still imports on Windows

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        msg = "another save is under way there (is the same job running twice?)"
        raise CheckpointLockedError(f"Not saving into {ckpt_dir}: {msg}.") from None
    except OSError:
        pass  # no flock on this filesystem (NFS directories): the atomic rename still holds
    return fd


def _prune(ckpt_dir: str, prefix: str, step: float, keep: int, overwrite: bool, every) -> None:
    found = _checkpoints(ckpt_dir, prefix)
    if overwrite:
        for s, path in found:
            if s > step:
                _remove(path)
        found = [(s, p) for s, p in found if s <= step]
    if keep >= 1 and len(found) > keep:
        last_kept = -math.inf
        for s, path in found[:-keep]:
            # Flax tests the step's truthiness here, so step 0 is never kept.
            if every and s and s - last_kept >= every:
                last_kept = s
                continue
            _remove(path)
    # Temporary files left by a save that was killed (no other save runs: we hold the lock).
    for name in os.listdir(ckpt_dir):
        if name.startswith(f".{prefix}") and name.endswith(".tmp"):
            _remove(os.path.join(ckpt_dir, name))


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
