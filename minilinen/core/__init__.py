"""The functional core: FrozenDict and the variable scope (no Module concept here)."""

from minilinen.core.frozen_dict import FrozenDict, copy, freeze, pop, pretty_repr, unfreeze

__all__ = ["FrozenDict", "freeze", "unfreeze", "copy", "pop", "pretty_repr"]
