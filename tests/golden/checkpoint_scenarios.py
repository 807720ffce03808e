"""Sequences of checkpoint saves, replayed with Flax (golden) and with minilinen.

``replay(save, restore, latest, root)`` runs every scenario with the given
library's ``save_checkpoint``, ``restore_checkpoint`` and ``latest_checkpoint``
and records, after each save, whether it raised and which checkpoint files the
directory holds, and at the end what the latest checkpoint restores to. The
target saved at step ``s`` is ``{'step': s}``, so a restore names its step.
"""

from __future__ import annotations

import os
from typing import Any

# name -> list of (step, keyword arguments of save_checkpoint)
SCENARIOS: dict[str, list[tuple[Any, dict]]] = {
    "keep_2_then_outdated_and_overwrite": [
        (1, {"keep": 2}),
        (2, {"keep": 2}),
        (3, {"keep": 2}),
        (10, {"keep": 2}),
        (11, {"keep": 2}),
        (5, {"keep": 2}),
        (11, {"keep": 2}),
        (11, {"keep": 2, "overwrite": True}),
        (5, {"keep": 2, "overwrite": True}),
        (6, {"keep": 2}),
    ],
    "keep_every_3": [(s, {"keep": 2, "keep_every_n_steps": 3}) for s in range(1, 12)],
    "keep_every_4_from_0": [
        (s, {"keep": 1, "keep_every_n_steps": 4}) for s in (0, 1, 2, 5, 6, 7, 9, 20, 21)
    ],
    "keep_0": [(s, {"keep": 0}) for s in (1, 2, 3)],
    "float_steps": [(1, {"keep": 5}), (2.5, {"keep": 5}), (10, {"keep": 5}), (9.5, {"keep": 5})],
    "two_prefixes": [
        (1, {"prefix": "ck_", "keep": 3}),
        (2, {"prefix": "other_", "keep": 3}),
        (3, {"prefix": "ck_", "keep": 3}),
        (1, {"prefix": "other_", "keep": 3}),
    ],
    "default_keep_1": [(s, {}) for s in (5, 10, 15)],
}


def replay(save: Any, restore: Any, latest: Any, root: str) -> dict:
    """Runs every scenario under ``root``; returns name -> record (JSON-able)."""
    records = {}
    for name, ops in SCENARIOS.items():
        ckpt_dir = os.path.join(root, name)
        steps = []
        for step, kwargs in ops:
            try:
                save(ckpt_dir, {"step": step}, step, **kwargs)
                outcome = "saved"
            except Exception:
                outcome = "error"
            files = sorted(n for n in os.listdir(ckpt_dir) if not n.startswith("."))
            steps.append({"step": step, "outcome": outcome, "files": files})
        prefix = ops[-1][1].get("prefix", "checkpoint_")
        path = latest(ckpt_dir, prefix=prefix)
        restored = restore(ckpt_dir, None, prefix=prefix)
        records[name] = {
            "steps": steps,
            "latest": os.path.basename(path) if path else None,
            "restored_step": restored["step"] if restored else None,
        }
    return records
