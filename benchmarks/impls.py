"""The implementations under test, loaded lazily so that minilinen runs never import flax."""

from __future__ import annotations

import importlib
import types
from dataclasses import dataclass
from typing import Any

IMPLS = ("minilinen", "flax", "raw")


@dataclass(frozen=True)
class Impl:
    """One implementation: its linen-like `nn`, its TrainState class and serialization module."""

    name: str
    nn: Any = None
    train_state: Any = None
    serialization: Any = None

    @property
    def is_linen(self) -> bool:
        """Whether the workloads' linen-style source runs with this implementation."""
        return self.nn is not None


def _optional(module: str) -> types.ModuleType | None:
    # Parts of minilinen land at different times; a missing part is reported
    # per workload instead of failing every workload.
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def load_impl(name: str) -> Impl:
    """Import one implementation by name: 'minilinen', 'flax' or 'raw'."""
    if name == "minilinen":
        import minilinen as nn

        return Impl(
            name,
            nn,
            _optional("minilinen.training.train_state"),
            _optional("minilinen.serialization"),
        )
    if name == "flax":
        import flax.linen as nn
        from flax import serialization
        from flax.training import train_state

        return Impl(name, nn, train_state, serialization)
    if name == "raw":
        return Impl(name)
    raise ValueError(f"Unknown implementation {name!r}; expected one of {IMPLS}.")
