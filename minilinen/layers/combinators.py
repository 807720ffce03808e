"""Sequential: chains layers, feeding each one's output to the next."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from minilinen.errors import LayerConfigError
from minilinen.module import Module, compact

__all__ = ["Sequential"]


class Sequential(Module):
    """Calls ``layers`` in order; a tuple output is splatted, a dict passed as kwargs."""

    layers: Sequence[Callable[..., Any]]

    def __post_init__(self) -> None:
        if not isinstance(self.layers, Sequence):
            raise LayerConfigError(
                f"Sequential 'layers' must be a sequence (list or tuple), got "
                f"{type(self.layers).__name__}."
            )
        super().__post_init__()

    @compact
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the chain on the given arguments."""
        if not self.layers:
            raise LayerConfigError(f"Sequential module {self.name!r} has no layers.")
        out = self.layers[0](*args, **kwargs)
        for layer in self.layers[1:]:
            if isinstance(out, tuple):
                out = layer(*out)
            elif isinstance(out, dict):
                out = layer(**out)
            else:
                out = layer(out)
        return out
