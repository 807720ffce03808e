"""Training utilities: ``train_state.TrainState`` and ``checkpoints``."""

from minilinen.training import checkpoints, train_state
from minilinen.training.train_state import TrainState

__all__ = ["checkpoints", "train_state", "TrainState"]
