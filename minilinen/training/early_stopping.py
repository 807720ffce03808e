"""``EarlyStopping``: stop when a metric has not improved for ``patience`` updates."""

from __future__ import annotations

import math

from minilinen import struct

__all__ = ["EarlyStopping"]


class EarlyStopping(struct.PyTreeNode):
    """Tracks the best (lowest) metric; ``update`` returns the new state."""

    min_delta: float = 0
    patience: int = 0
    best_metric: float = float("inf")
    patience_count: int = 0
    should_stop: bool = False
    has_improved: bool = False

    def reset(self) -> EarlyStopping:
        """The state before any update (same ``min_delta`` and ``patience``)."""
        return self.replace(
            best_metric=float("inf"), patience_count=0, should_stop=False, has_improved=False
        )

    def update(self, metric: float) -> EarlyStopping:
        """Records ``metric``: an improvement by more than ``min_delta`` resets patience."""
        if math.isinf(self.best_metric) or self.best_metric - metric > self.min_delta:
            return self.replace(best_metric=metric, patience_count=0, has_improved=True)
        stop = self.should_stop or self.patience_count >= self.patience
        return self.replace(
            patience_count=self.patience_count + 1, should_stop=stop, has_improved=False
        )
