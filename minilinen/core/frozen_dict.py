"""FrozenDict: an immutable, hashable mapping that is a JAX pytree.

Nested mappings are stored as plain dicts inside ``_dict`` and wrapped in a
FrozenDict only when read, so only the outer node is flattened through a
callback; everything below it is flattened by JAX's C++ dict handling.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import jax

from minilinen.errors import FrozenDictImmutableError

__all__ = ["FrozenDict", "freeze", "unfreeze", "copy", "pop", "pretty_repr"]


def unfreeze(x: Any) -> Any:
    """Returns a deep copy of ``x`` made of plain dicts (leaves are shared); a value that
    is neither a FrozenDict nor a dict passes through."""
    if isinstance(x, FrozenDict):
        x = x._dict
    if isinstance(x, dict):
        return {k: unfreeze(v) for k, v in x.items()}
    return x


_thaw = unfreeze  # the name call_args.py and transforms/filters.py import


class FrozenDict(Mapping):
    """An immutable mapping; nested dicts read back as FrozenDicts."""

    # _dict and _flat (sorted values, sorted keys) are filled lazily from each
    # other: a FrozenDict made by unflattening holds only _flat, one made by a
    # user only _dict.
    __slots__ = ("_dict", "_hash", "_flat")

    def __init__(self, *args: Any, __unsafe_skip_copy__: bool = False, **kwargs: Any):
        plain = dict(*args, **kwargs)
        self._dict = plain if __unsafe_skip_copy__ else unfreeze(plain)
        self._hash = None

    @classmethod
    def _wrap(cls, plain: dict) -> FrozenDict:
        """Wraps a dict of plain dicts without copying; the caller gives it up."""
        new = object.__new__(cls)
        new._dict = plain
        new._hash = None
        return new

    def __getattr__(self, name: str) -> Any:
        if name == "_flat":
            keys = tuple(sorted(self._dict))
            self._flat = (tuple([self._dict[k] for k in keys]), keys)
            return self._flat
        if name == "_dict":
            values, keys = self._flat
            self._dict = dict(zip(keys, values))
            return self._dict
        raise AttributeError(f"'FrozenDict' object has no attribute {name!r}")

    def __getitem__(self, key: Any) -> Any:
        value = self._dict[key]
        if isinstance(value, dict):
            return FrozenDict._wrap(value)
        return value

    def _immutable(self, *key_and_value: Any) -> None:
        raise FrozenDictImmutableError("FrozenDict is immutable.")

    __setitem__ = __delitem__ = _immutable

    def __contains__(self, key: object) -> bool:
        return key in self._dict

    def __iter__(self):
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __repr__(self) -> str:
        return self.pretty_repr()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._dict == other._dict
        return NotImplemented if not isinstance(other, Mapping) else self._dict == dict(other)

    def __hash__(self) -> int:
        if self._hash is None:
            # Mixed key types sort by (type name, str) so hashing never fails on order.
            items = sorted(self.items(), key=lambda kv: (type(kv[0]).__name__, str(kv[0])))
            self._hash = hash(tuple(items))
        return self._hash

    def __reduce__(self):
        return FrozenDict, (self.unfreeze(),)

    def __or__(self, other: Mapping) -> FrozenDict:
        return self.copy(other)

    def copy(self, add_or_replace: Mapping | None = None) -> FrozenDict:
        """Returns a new FrozenDict with ``add_or_replace`` merged in (shallowly)."""
        merged = dict(self._dict)
        if add_or_replace:
            merged.update(unfreeze(dict(add_or_replace)))
        return FrozenDict._wrap(merged)

    def pop(self, key: Any) -> tuple[FrozenDict, Any]:
        """Returns ``(rest, value)``: the dict without ``key``, and its value."""
        value = self[key]
        rest = dict(self._dict)
        del rest[key]
        return FrozenDict._wrap(rest), value

    def unfreeze(self) -> dict:
        """Returns a deep copy made of plain dicts."""
        return unfreeze(self._dict)  # the module-level function

    def pretty_repr(self, num_spaces: int = 4) -> str:
        return "FrozenDict(" + _pretty_body(self._dict, num_spaces) + ")"

    def tree_flatten_with_keys(self):
        values, keys = self._flat
        return tuple(zip(map(jax.tree_util.DictKey, keys), values)), keys


# Children are the values in sorted key order with the keys as aux data, as in
# Flax, so paths hold one DictKey per key. Flattening is a C-level attribute
# read of the cached _flat and unflattening stores _flat without building the
# dict: a jitted call pays ~0.2 us per FrozenDict over a plain dict (RESULTS.md).
def _unflatten(keys: tuple, values: tuple) -> FrozenDict:
    new = object.__new__(FrozenDict)
    new._flat = (values, keys)
    new._hash = None
    return new


jax.tree_util.register_pytree_with_keys(
    FrozenDict, FrozenDict.tree_flatten_with_keys, _unflatten, operator.attrgetter("_flat")
)


def _indent(text: str, num_spaces: int) -> str:
    pad = " " * num_spaces
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def _pretty_body(value: Any, num_spaces: int) -> str:
    if not isinstance(value, Mapping):
        return repr(value)
    if not value:
        return "{}"
    lines = []
    for key, item in value.items():
        lines.append(f"{key}: {_pretty_body(item, num_spaces)},")
    return "{\n" + _indent("\n".join(lines), num_spaces) + "\n}"


def freeze(xs: Mapping) -> FrozenDict:
    """Makes an immutable FrozenDict of ``xs`` (a deep copy of its mappings)."""
    return FrozenDict(xs)


def copy(x: Mapping, add_or_replace: Mapping | None = None) -> Mapping:
    """Like ``FrozenDict.copy``, but a plain dict gives back a plain dict."""
    if isinstance(x, FrozenDict):
        return x.copy(add_or_replace or {})
    if isinstance(x, dict):
        return {**x, **(add_or_replace or {})}
    raise TypeError(f"copy() expects a FrozenDict or dict, got {type(x).__name__}.")


def pop(x: Mapping, key: Any) -> tuple[Mapping, Any]:
    """Like ``FrozenDict.pop``, but a plain dict gives back a plain dict."""
    if isinstance(x, FrozenDict):
        return x.pop(key)
    if isinstance(x, dict):
        rest = dict(x)
        value = rest.pop(key)
        return rest, value
    raise TypeError(f"pop() expects a FrozenDict or dict, got {type(x).__name__}.")


def pretty_repr(x: Any, num_spaces: int = 4) -> str:
    """The indented ``{ key: value, }`` form that FrozenDict's repr uses."""
    if isinstance(x, FrozenDict):
        return x.pretty_repr(num_spaces)
    return _pretty_body(x, num_spaces)
