"""Directory checkpoints that are never half-written and are checked when read.

A checkpoint of step ``s`` is the file ``{ckpt_dir}/{prefix}{s}``. It is written
under a temporary name (``.{prefix}{s}.{pid}.tmp``), flushed to disk with
``fsync``, renamed over its final name in one atomic step, and the directory is
fsynced so the rename itself survives a power cut. A reader therefore sees
either the whole file or no file; a process killed mid-save leaves at most a
temporary file, which the next save removes.

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
step (``available_steps`` lists them). Files without the magic are read as
plain Flax msgpack checkpoints, unverified, so Flax's legacy checkpoints load.

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
from typing import Any

from minilinen.errors import (
    CheckpointError,
    CheckpointNotFoundError,
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

    Args:
      ckpt_dir: the directory (created if missing).
      target: any serializable pytree (a TrainState, a dict of params, ...).
      step: the step number; it must exceed every existing step unless ``overwrite``.
      prefix: file-name prefix of this series of checkpoints.
      keep: how many of the newest checkpoints to keep; older ones are deleted.
      overwrite: allow replacing step ``step``; checkpoints newer than it are deleted.
      keep_every_n_steps: also keep an old checkpoint whenever at least this many
        steps separate it from the last old one kept.
    """
    ckpt_dir = os.fspath(ckpt_dir)
    os.makedirs(ckpt_dir, exist_ok=True)
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
    size = 0
    for piece in pieces:
        digest.update(piece)
        size += memoryview(piece).nbytes
    tmp = os.path.join(ckpt_dir, f".{prefix}{step}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_HEADER.pack(MAGIC, VERSION, size, digest.digest()))
            for piece in pieces:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(ckpt_dir)
    _prune(ckpt_dir, prefix, step, keep, overwrite, keep_every_n_steps, tmp)
    return path


def restore_checkpoint(
    ckpt_dir: str | os.PathLike,
    target: Any,
    step: int | float | None = None,
    prefix: str = "checkpoint_",
    parallel: bool = True,
) -> Any:
    """Restores the latest checkpoint (or ``step``) into ``target``'s structure.

    Args:
      ckpt_dir: the checkpoint directory, or the path of one checkpoint file.
      target: the template; None returns the raw state dict instead.
      step: the step to restore; None means the latest. Without any checkpoint
        (and ``step`` None), ``target`` is returned unchanged, as Flax does.
      prefix: file-name prefix of this series of checkpoints.
      parallel: accepted for Flax compatibility; reading is a single ``read``.
    """
    ckpt_dir = os.fspath(ckpt_dir)
    if step is not None:
        path = os.path.join(ckpt_dir, f"{prefix}{step}")
        if not os.path.isfile(path):
            raise CheckpointNotFoundError(
                f"No checkpoint of step {step}: {path} does not exist. Available steps: "
                f"{available_steps(ckpt_dir, prefix, float)}."
            )
    elif os.path.isdir(ckpt_dir):
        path = latest_checkpoint(ckpt_dir, prefix)
        if path is None:
            return target
    elif os.path.exists(ckpt_dir):
        path = ckpt_dir
    else:
        return target
    payload = _read_payload(path)
    try:
        state = msgpack_restore(payload)
    except CorruptDataError as e:
        raise _corrupt(path, str(e)) from e
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
        if not os.path.isfile(path):
            continue
        number = int(suffix) if _INT_RE.match(suffix) else float(suffix)
        if math.isfinite(number):
            found.append((number, path))
    found.sort(key=lambda sp: (sp[0], sp[1]))
    return found


def _read_payload(path: str) -> memoryview:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise CheckpointError(
            f"{path} is a directory (an Orbax checkpoint?); minilinen reads single-file "
            "checkpoints written by save_checkpoint or by Flax's legacy format."
        ) from None
    view = memoryview(data)
    if view[: len(MAGIC)] != MAGIC:
        if not data:
            raise _corrupt(path, "the file is empty")
        return view  # a legacy Flax checkpoint: msgpack bytes with no header
    if len(data) < _HEADER.size:
        raise _corrupt(path, f"the file ends inside its {_HEADER.size}-byte header")
    _, version, size, digest = _HEADER.unpack_from(data)
    if version != VERSION:
        raise _corrupt(path, f"unknown format version {version} (this reader knows {VERSION})")
    if size != len(data) - _HEADER.size:
        raise _corrupt(
            path,
            f"the header announces {size} payload bytes, the file holds {len(data) - _HEADER.size}",
        )
    payload = view[_HEADER.size :]
    if hashlib.sha256(payload).digest() != digest:
        raise _corrupt(path, "the SHA-256 checksum of its contents does not match")
    return payload


def _corrupt(path: str, reason: str) -> CorruptCheckpointError:
    err = CorruptCheckpointError(
        f"Checkpoint {path} is corrupt: {reason}. Restore an earlier step with "
        "restore_checkpoint(..., step=...) (available_steps() lists them)."
    )
    err.filename = path
    return err


def _fsync_dir(ckpt_dir: str) -> None:
    try:
        fd = os.open(ckpt_dir, os.O_RDONLY)
    except OSError:
        return  # platforms that cannot open a directory cannot fsync one either
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prune(
    ckpt_dir: str,
    prefix: str,
    step: int | float,
    keep: int,
    overwrite: bool,
    keep_every_n_steps: int | None,
    own_tmp: str,
) -> None:
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
            if keep_every_n_steps and s and s - last_kept >= keep_every_n_steps:
                last_kept = s
                continue
            _remove(path)
    # Temporary files left by a save that was killed.
    stale = f".{prefix}"
    for name in os.listdir(ckpt_dir):
        path = os.path.join(ckpt_dir, name)
        if name.startswith(stale) and name.endswith(".tmp") and path != own_tmp:
            _remove(path)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
