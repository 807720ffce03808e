"""minilinen: the Flax linen programming model, small and fast."""

from minilinen.core import FrozenDict

__all__ = ["FrozenDict"]
