"""Forks children that save checkpoints in a loop, for the SIGKILL test in test_checkpoints.py.

Run as ``python checkpoint_crash_worker.py CKPT_DIR``. The worker imports
minilinen once (no JAX computation, so forking is safe); for every ``fork`` line
on stdin it forks a child, prints the child's pid, waits for it to die (the test
kills it with SIGKILL) and prints ``died <status>``. Each child continues the
series from the latest checkpoint and saves ``tree_for_step(step)`` forever.
"""

from __future__ import annotations

import os
import sys

import numpy as np

SIZE = 256 * 1024  # float32 items per array: a save writes ~2 MB, so kills land mid-write


def tree_for_step(step: int) -> dict:
    """The checkpoint content of ``step``: every byte depends on the step."""
    base = np.arange(SIZE, dtype=np.float32)
    return {
        "step": step,
        "params": {"w": base + step, "b": np.full(SIZE, step, np.float32)},
        "tag": f"step-{step}",
    }


def save_forever(ckpt_dir: str) -> None:
    from minilinen.training import checkpoints

    steps = checkpoints.available_steps(ckpt_dir)
    step = steps[-1] + 1 if steps else 0
    while True:
        checkpoints.save_checkpoint(ckpt_dir, tree_for_step(step), step, keep=3)
        step += 1


def main() -> None:
    ckpt_dir = sys.argv[1]
    import minilinen.training.checkpoints  # noqa: F401  (import once, before forking)

    for line in sys.stdin:
        if line.strip() != "fork":
            break
        pid = os.fork()
        if pid == 0:
            try:
                save_forever(ckpt_dir)
            finally:
                os._exit(1)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print("died", status, flush=True)


if __name__ == "__main__":
    main()
