"""The type names minilinen's signatures annotate with, and ``In``/``Out``: ``flax.typing``."""

import dataclasses
from collections.abc import Callable
from typing import Any

# Annotation-only names that Flax code imports from flax.typing; nothing checks them.
Array = Dtype = PRNGKey = Shape = PrecisionLike = PaddingLike = LaxPadding = Axes = Any
VariableDict = FrozenVariableDict = Collection = RNGSequences = Any
Initializer = DotGeneralT = ConvGeneralDilatedT = EinsumT = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class In:
    """A ``variable_axes`` value of nn.scan/nn.vmap: the collection is mapped over
    ``axis`` on the way in only (read inside, never written back)."""

    axis: Any


@dataclasses.dataclass(frozen=True)
class Out:
    """A ``variable_axes`` value of nn.scan/nn.vmap: the collection is made inside and
    stacked on ``axis`` on the way out only (the given values are not read)."""

    axis: Any
