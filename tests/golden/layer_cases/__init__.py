"""Layer golden cases, written once as functions of ``nn``.

``nn`` is ``flax.linen`` when ``make_golden_layers.py`` records the goldens and
``minilinen`` when ``tests/test_layers_golden.py`` replays them, so the model source
is literally the same. A case is either a module run (``init`` then ``apply`` on the
variables ``init`` returned) or a plain function call (``fn(*args, **kwargs)``).
Every case name starts with its layer kind (the file the layer lives in).
"""

from . import feedforward, sequence  # noqa: F401  (importing registers the cases)
from .base import CASES, Case

__all__ = ["CASES", "Case"]
