"""The type names minilinen's signatures annotate with (as in ``flax.typing``)."""

from collections.abc import Callable
from typing import Any

Array = Any
Dtype = Any
Initializer = Callable[..., Any]
