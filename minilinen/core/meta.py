"""Boxes that carry metadata beside a variable's value (e.g. partitioning)."""

from __future__ import annotations

import abc
from typing import Any


class AxisMetadata(abc.ABC):
    """Base class of metadata boxes: modules read ``unbox()``, trees keep the box."""

    __slots__ = ()

    @abc.abstractmethod
    def unbox(self) -> Any:
        """The plain value inside the box."""

    @abc.abstractmethod
    def replace_boxed(self, value: Any) -> AxisMetadata:
        """The same metadata around a new value."""
