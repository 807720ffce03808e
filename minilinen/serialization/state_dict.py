"""State dicts: any supported pytree as nested ``{str: ...}`` dicts, and back.

A state dict is what goes on the wire: mappings keyed by strings, with lists,
tuples and namedtuples turned into dicts keyed ``'0'``, ``'1'``, ... (or by field
name), and ``struct`` dataclasses into dicts of their pytree fields. Leaves are
left alone. ``from_state_dict`` rebuilds a value shaped like a template and
raises ``StateDictMismatchError`` naming the path when the two disagree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from minilinen.core.frozen_dict import FrozenDict
from minilinen.errors import StateDictMismatchError

__all__ = [
    "to_state_dict",
    "from_state_dict",
    "register_serialization_state",
    "is_serializable",
    "current_path",
]

ToFn = Callable[[Any], dict]
FromFn = Callable[[Any, Any], Any]

_REGISTRY: dict[type, tuple[ToFn, FromFn]] = {}
# type -> handler pair, or None for leaves; filled on first sight of each type so
# the namedtuple/dataclass probing runs once per type, not once per value.
_RESOLVED: dict[type, tuple[ToFn, FromFn] | None] = {}


class _Path(threading.local):
    def __init__(self):
        self.stack: list[str] = []  # the path of the value being restored on this thread


_PATH = _Path()


def register_serialization_state(
    ty: type, ty_to_state_dict: ToFn, ty_from_state_dict: FromFn, override: bool = False
) -> None:
    """Registers how values of type ``ty`` become state dicts and are restored."""
    if ty in _REGISTRY and not override:
        raise ValueError(
            f"A serialization handler for {ty.__name__!r} is already registered; "
            "pass override=True to replace it."
        )
    _REGISTRY[ty] = (ty_to_state_dict, ty_from_state_dict)
    _RESOLVED.clear()


def _handler(ty: type) -> tuple[ToFn, FromFn] | None:
    if ty in _RESOLVED:
        return _RESOLVED[ty]
    if issubclass(ty, tuple) and hasattr(ty, "_fields"):  # before the registry, as Flax does
        handler = _fields_handlers(ty, "namedtuple", ty._fields, lambda x, kw: type(x)(**kw))
    elif ty in _REGISTRY:
        handler = _REGISTRY[ty]
    elif "_minilinen_data_fields" in ty.__dict__:  # a struct dataclass
        # Pytree fields only: static fields (apply_fn, tx) live in code, not in files.
        names = ty._minilinen_data_fields
        handler = _fields_handlers(ty, "dataclass", names, lambda x, kw: x.replace(**kw))
    else:
        handler = None
    _RESOLVED[ty] = handler
    return handler


def is_serializable(target: Any) -> bool:
    """Whether ``target`` has a state-dict handler (is not a plain leaf)."""
    return not isinstance(target, type) and _handler(type(target)) is not None


def to_state_dict(target: Any) -> Any:
    """Returns ``target`` as a state dict; leaves (arrays, scalars, None) pass through."""
    handler = _handler(type(target))
    if handler is None:
        return target
    return handler[0](target)


def from_state_dict(target: Any, state: Any, name: str = ".") -> Any:
    """Restores ``state`` into a value shaped like ``target``.

    Args:
      target: the template; its structure, and the shape and dtype of its array
        leaves, are what ``state`` must match.
      state: a state dict, as made by ``to_state_dict`` or ``msgpack_restore``.
      name: the path component of this value, for error messages.
    """
    handler = _handler(type(target))
    stack = _PATH.stack
    stack.append(name)
    try:
        if handler is None:
            return _restore_leaf(target, state)
        return handler[1](target, state)
    finally:
        stack.pop()


def current_path() -> str:
    """The '/'-joined path of the value ``from_state_dict`` is restoring now."""
    return "/".join(_PATH.stack)


def _where() -> str:
    # The stack starts with '.' for the root; users know paths as 'params/Dense_0/kernel'.
    parts = _PATH.stack[1:]
    return f"at '{'/'.join(parts)}'" if parts else "at the top level"


def _type_name(value: Any) -> str:
    return type(value).__name__


def _restore_leaf(target: Any, state: Any) -> Any:
    if isinstance(state, dict):
        if hasattr(target, "shape") and hasattr(target, "dtype"):
            raise StateDictMismatchError(
                f"Expected an array of shape {tuple(target.shape)} {_where()}, but the "
                f"state dict holds a dict with keys {sorted(map(str, state))}."
            )
        return state
    t_shape = getattr(target, "shape", None)
    s_shape = getattr(state, "shape", None)
    if t_shape is None or s_shape is None or not hasattr(target, "dtype"):
        return state  # Flax restores a leaf as whatever the state holds
    if tuple(t_shape) != tuple(s_shape):
        raise StateDictMismatchError(
            f"Shape mismatch {_where()}: the template has shape {tuple(t_shape)}, the "
            f"state dict has shape {tuple(s_shape)}."
        )
    if target.dtype != state.dtype:
        raise StateDictMismatchError(
            f"Dtype mismatch {_where()}: the template has dtype {target.dtype}, the "
            f"state dict has dtype {state.dtype}. Cast the template (or the saved "
            "tree) so they agree."
        )
    return state


def _expect_dict(state: Any, what: str) -> dict:
    if not isinstance(state, dict):
        raise StateDictMismatchError(
            f"Expected a dict for {what} {_where()}, but the state dict holds "
            f"{_type_name(state)}: {state!r:.80}."
        )
    return state


# --- dict and FrozenDict --------------------------------------------------


def _dict_to(xs: dict) -> dict:
    out = {str(k): to_state_dict(v) for k, v in xs.items()}
    if len(out) != len(xs):
        raise StateDictMismatchError(
            f"Dict keys do not have unique string forms: {list(xs)} give {sorted(map(str, out))}."
        )
    return out


def _dict_from(xs: dict, state: Any, what: str = "a dict") -> dict:
    state = _expect_dict(state, what)
    missing = [k for k in xs if str(k) not in state]
    if missing:
        raise StateDictMismatchError(
            f"Key mismatch {_where()}: the template has keys {sorted(map(str, xs))}, the "
            f"state dict has keys {sorted(map(str, state))}; missing from the state dict: "
            f"{sorted(map(str, missing))}."
        )
    # Extra keys in the state dict are ignored, as Flax does: restoring a subset works.
    return {k: from_state_dict(v, state[str(k)], name=str(k)) for k, v in xs.items()}


def _frozen_to(xs: FrozenDict) -> dict:
    return _dict_to(xs._dict)


def _frozen_from(xs: FrozenDict, state: Any) -> FrozenDict:
    # The restored values are fresh plain dicts, so wrapping needs no defensive copy.
    return FrozenDict._wrap(_dict_from(xs._dict, state, "a FrozenDict"))


# --- sequences ------------------------------------------------------------


def _list_to(xs: list | tuple) -> dict:
    return {str(i): to_state_dict(v) for i, v in enumerate(xs)}


def _list_from(xs: list, state: Any) -> list:
    state = _expect_dict(state, f"a {_type_name(xs)}")
    if len(state) != len(xs):
        raise StateDictMismatchError(
            f"Length mismatch {_where()}: the template {_type_name(xs)} has {len(xs)} "
            f"items, the state dict has {len(state)} (keys {sorted(map(str, state))})."
        )
    keys = [str(i) for i in range(len(xs))]
    if any(key not in state for key in keys):
        raise StateDictMismatchError(
            f"Key mismatch {_where()}: a {_type_name(xs)} of {len(xs)} items needs "
            f"keys '0'..'{len(xs) - 1}', the state dict has keys {sorted(map(str, state))}."
        )
    return [from_state_dict(v, state[key], name=key) for v, key in zip(xs, keys)]


def _tuple_from(xs: tuple, state: Any) -> tuple:
    return tuple(_list_from(xs, state))


# --- namedtuples and struct dataclasses: dicts of named fields ----------


def _fields_handlers(ty: type, kind: str, names: tuple, rebuild: FromFn) -> tuple[ToFn, FromFn]:
    """Handlers of a type stored as ``{name: getattr(x, name)}`` for its fields ``names``;
    ``rebuild(x, values)`` makes a copy of ``x`` with the restored values."""
    what = f"{kind} {ty.__name__}"

    def to_fn(x: Any) -> dict:
        return {name: to_state_dict(getattr(x, name)) for name in names}

    def from_fn(x: Any, state: Any) -> Any:
        state = _expect_dict(state, what)
        if kind == "namedtuple" and "name" not in names:
            state = _namedtuple_old_layout(state)
        missing = [n for n in names if n not in state]
        unknown = [k for k in state if k not in names]
        if missing or unknown:
            raise StateDictMismatchError(
                f"Field mismatch {_where()} restoring {what}: it has fields {list(names)}, the "
                f"state dict has keys {sorted(map(str, state))} (missing: {missing}, unknown: "
                f"{sorted(map(str, unknown))})."
            )
        return rebuild(x, {n: from_state_dict(getattr(x, n), state[n], name=n) for n in names})

    return to_fn, from_fn


def _namedtuple_old_layout(state: dict) -> dict:
    """Reads the older ``{'name', 'fields': {'0': field}, 'values': {'0': value}}`` layout."""
    if set(state) != {"name", "fields", "values"}:
        return state
    fields, values = state["fields"], state["values"]
    if (
        isinstance(fields, dict)
        and isinstance(values, dict)
        and all(type(f) is str for f in fields.values())
    ):
        return {fields[k]: values[k] for k in fields if k in values}
    return state


register_serialization_state(dict, _dict_to, _dict_from)
register_serialization_state(FrozenDict, _frozen_to, _frozen_from)
register_serialization_state(list, _list_to, _list_from)
register_serialization_state(tuple, _list_to, _tuple_from)
