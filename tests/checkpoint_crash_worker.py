"""Child processes for the fault tests in test_checkpoints.py: savers that are killed,
paused, short of disk space, unprivileged, or racing each other.

Every child reports on stdout, one line per event, so the tests decide what to assert
from what the children did, never from how long they took:

``python checkpoint_crash_worker.py forker CKPT_DIR``
    Imports minilinen once (no JAX computation, so forking is safe). For every line
    ``fork {"save": K, "event": E}`` on stdin it forks a child and prints ``pid P``;
    the child continues the series from the latest checkpoint, saving
    ``tree_for_step(step)`` with ``keep=3`` forever and printing ``begin S`` and
    ``saved S`` around each save. With a pause point, the child stops inside its
    save number K (0-based) just before event E (``fsync_file``, ``replace``,
    ``fsync_dir`` or ``remove``), prints ``paused E S`` and waits to be killed. When
    the child has died, the forker prints ``died STATUS``.

``python checkpoint_crash_worker.py save CKPT_DIR OPTIONS_JSON``
    Saves the steps in ``OPTIONS["steps"]`` one after another and prints one JSON line
    per step: ``{"step": S, "saved": PATH}`` or ``{"step": S, "error": CLASS,
    "message": ...}``. Options: ``writer`` (a tag stored in the tree), ``size``,
    ``keep``, ``overwrite``, ``fsize_limit`` (RLIMIT_FSIZE in bytes, SIGXFSZ ignored:
    a disk that fills up), ``uid`` (drop to this user first), ``pause`` (``[K, E]``:
    before event E of save K print ``{"paused": E}`` and wait for a line on stdin),
    ``handshake`` (wait for a line on stdin after each save), ``unserializable`` (save
    a tree that cannot be serialized instead).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import sys

import numpy as np

SIZE = 256 * 1024  # float32 items per array: a save writes ~2 MB, so kills land mid-write


def tree_for_step(step: int, writer: int = 0, size: int = SIZE) -> dict:
    """The checkpoint content of ``step`` saved by ``writer``: every byte depends on both."""
    base = np.arange(size, dtype=np.float32)
    return {
        "step": step,
        "params": {"w": base + step, "b": np.full(size, step + 1000 * writer, np.float32)},
        "tag": f"step-{step}-writer-{writer}",
    }


class Probes:
    """Pass-through spies on the os calls a save makes: each is reported, then made.

    ``pause`` is ``(save index, event)``; ``wait`` is called there before the real call.
    """

    def __init__(self, pause, wait):
        self.save, self.step, self.pause, self.wait = -1, None, pause, wait
        self.real = {name: getattr(os, name) for name in ("fsync", "replace", "remove")}
        os.fsync = lambda fd: self.event(
            "fsync_dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync_file", "fsync", fd
        )
        os.replace = lambda src, dst: self.event("replace", "replace", src, dst)
        os.remove = lambda path: self.event("remove", "remove", path)

    def begin(self, step: int) -> None:
        self.save, self.step = self.save + 1, step

    def event(self, event: str, name: str, *args):
        if self.pause is not None and tuple(self.pause) == (self.save, event):
            self.pause = None
            self.wait(event, self.step)
        return self.real[name](*args)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pause_until_killed(event: str, step: int) -> None:
    say(f"paused {event} {step}")
    while True:
        signal.pause()


def save_forever(ckpt_dir: str, pause) -> None:
    from minilinen.training import checkpoints

    probes = Probes(pause, pause_until_killed)
    steps = checkpoints.available_steps(ckpt_dir)
    step = steps[-1] + 1 if steps else 0
    while True:
        probes.begin(step)
        say(f"begin {step}")
        checkpoints.save_checkpoint(ckpt_dir, tree_for_step(step), step, keep=3)
        say(f"saved {step}")
        step += 1


def forker(ckpt_dir: str) -> None:
    for line in sys.stdin:
        command, _, spec = line.partition(" ")
        if command != "fork":
            break
        spec = json.loads(spec)
        pid = os.fork()
        if pid == 0:
            try:
                save_forever(ckpt_dir, (spec["save"], spec["event"]) if spec else None)
            finally:
                os._exit(1)
        say(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        say(f"died {status}")


def save(ckpt_dir: str, options: dict) -> None:
    from minilinen.errors import MinilinenError
    from minilinen.training import checkpoints

    def wait_for_resume(event: str, step: int) -> None:
        say(json.dumps({"paused": event, "step": step}))
        sys.stdin.readline()

    probes = Probes(options.get("pause"), wait_for_resume)
    if "fsize_limit" in options:
        # A disk that fills up: writes past the limit fail with EFBIG instead of killing us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (options["fsize_limit"],) * 2)
    if "uid" in options:  # everything is imported: the files of Python itself may be unreadable
        os.setgroups([])
        os.setgid(options["uid"])
        os.setuid(options["uid"])
    for step in options["steps"]:
        probes.begin(step)
        tree = tree_for_step(step, options.get("writer", 0), options.get("size", SIZE))
        if options.get("unserializable"):  # proves the directory is checked before any work
            tree = {"a": {1, 2}}
        try:
            path = checkpoints.save_checkpoint(
                ckpt_dir,
                tree,
                step,
                keep=options.get("keep", 1),
                overwrite=options.get("overwrite", False),
            )
            say(json.dumps({"step": step, "saved": path}))
        except MinilinenError as e:
            say(json.dumps({"step": step, "error": type(e).__name__, "message": str(e)}))
        if options.get("handshake"):
            sys.stdin.readline()


def main() -> None:
    import fcntl  # noqa: F401  (checkpoints imports it lazily; a dropped uid may not read it)

    import minilinen.training.checkpoints  # noqa: F401  (import once, before forking)

    command, ckpt_dir = sys.argv[1], sys.argv[2]
    if command == "forker":
        forker(ckpt_dir)
    else:
        save(ckpt_dir, json.loads(sys.argv[3]))


if __name__ == "__main__":
    main()
