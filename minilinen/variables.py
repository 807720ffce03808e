"""``Variable``: a handle to one variable of a scope, read and written via ``.value``."""

from __future__ import annotations

from typing import Any

from minilinen.core.meta import AxisMetadata

__all__ = ["Variable"]


class Variable:
    """A named variable in a collection; ``.value`` reads or writes it in place."""

    __slots__ = ("scope", "collection", "name", "unbox")

    def __init__(self, scope: Any, collection: str, name: str, unbox: bool = True):
        self.scope, self.collection, self.name, self.unbox = scope, collection, name, unbox

    @property
    def value(self) -> Any:
        value = self.scope.get_variable(self.collection, self.name)
        return value.unbox() if self.unbox and isinstance(value, AxisMetadata) else value

    @value.setter
    def value(self, value: Any) -> None:
        if self.unbox:
            boxed = self.scope.get_variable(self.collection, self.name)
            if isinstance(boxed, AxisMetadata) and not isinstance(value, AxisMetadata):
                value = boxed.replace_boxed(value)
        self.scope.put_variable(self.collection, self.name, value)

    def is_mutable(self) -> bool:
        """Whether this variable's collection may be written in the current call."""
        return self.scope.is_mutable_collection(self.collection)

    def __repr__(self) -> str:
        return f"Variable({self.collection}/{self.name} in {self.scope.path_text})"
