"""Boxes that carry metadata beside a variable's value (e.g. partitioning)."""

from __future__ import annotations

from typing import Any


class AxisMetadata:
    """Base class of metadata boxes: modules read ``unbox()``, trees keep the box."""

    __slots__ = ()

    def unbox(self) -> Any:
        raise TypeError(f"{type(self).__name__} must define unbox().")

    def replace_boxed(self, value: Any) -> AxisMetadata:
        raise TypeError(f"{type(self).__name__} must define replace_boxed().")


def unbox(tree: Any) -> Any:
    """Replaces every metadata box in ``tree`` by its value."""
    import jax

    return jax.tree_util.tree_map(
        lambda x: x.unbox() if isinstance(x, AxisMetadata) else x,
        tree,
        is_leaf=lambda x: isinstance(x, AxisMetadata),
    )
