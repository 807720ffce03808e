"""``nn.jit``: a lifted ``jax.jit`` over a module (or a function of a scope).

Each call first forks the RNG streams (one ``make_rng`` per stream on the
module's scope, as Flax does), and keys inside derive from the forked keys
with paths relative to the jitted module. The compiled function is cached per
module configuration, mutability and RNG counter state; when a call hits the
cache no Python runs inside, so the counters are advanced by what the first
trace consumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax

from minilinen import errors
from minilinen.core.scope import CollectionFilter, Scope
from minilinen.module import Module
from minilinen.transforms.lift import Pack
from minilinen.transforms.module_lift import InnerCall, module_transform

__all__ = ["jit", "jit_scope"]


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (str, int)):
        return (value,)
    return tuple(value)


def _counts(counters: dict, prefix: tuple = ()) -> dict:
    flat = {}
    for key, value in counters.items():
        if isinstance(value, dict):
            flat.update(_counts(value, prefix + key))
        else:
            flat[prefix + (key,)] = value
    return flat


def _advance(counters: dict, delta: dict) -> None:
    for path, step in delta.items():
        node = counters
        for name in path[:-1]:
            node = node.setdefault((name,), {})
        node[path[-1]] = node.get(path[-1], 0) + step


@dataclasses.dataclass(frozen=True)
class _Signature:
    """What a compiled body depends on besides its array arguments."""

    key: Any
    mutable: Any
    flags: tuple
    counts: tuple


class _Call:
    __slots__ = ("pack", "traced")

    def __init__(self, pack: Pack):
        self.pack = pack
        self.traced = False


def jit_scope(
    fn: Callable,
    variables: CollectionFilter = True,
    rngs: CollectionFilter = True,
    static_argnums: int | Iterable[int] = (),
    static_argnames: str | Iterable[str] = (),
    donate_argnums: int | Iterable[int] = (),
    device: Any = None,
    backend: str | None = None,
) -> Callable:
    """A lifted ``jax.jit`` over a Module class or method. At the scope level it lifts
    ``fn(scope, key, *args, **kwargs)``: ``key`` is hashable and names the
    configuration (a new key compiles anew) and argnums index ``args``.

    Args:
      static_argnums / donate_argnums: argument positions counting ``self`` as 0.
    """
    calls: list[_Call] = []

    def traced(signature: _Signature, groups: tuple, rng_groups: tuple, *args, **kwargs):
        call = calls[-1]
        call.traced = True
        inner = call.pack.inner_scope(groups, rng_groups)
        y = fn(inner, signature.key, *args, **kwargs)
        return y, call.pack.repack(inner)

    # The jitted function takes (signature, variable groups, rng groups, *args).
    jit_kwargs: dict = {
        "static_argnums": (0, *(i + 3 for i in _as_tuple(static_argnums))),
        "static_argnames": _as_tuple(static_argnames),
        "donate_argnums": tuple(i + 3 for i in _as_tuple(donate_argnums)),
    }
    if device is not None:
        jit_kwargs["device"] = device
    if backend is not None:
        jit_kwargs["backend"] = backend
    jitted = jax.jit(traced, **jit_kwargs)
    consumed: dict[_Signature, dict] = {}

    def lifted(scope: Any, key: Any, *args: Any, **kwargs: Any) -> Any:
        scopes = (scope,) if isinstance(scope, Scope) else scope
        forked = [{stream: s.make_rng(stream) for stream in s.frame.rngs} for s in scopes]
        pack = Pack(scope, (variables,), (variables,), (rngs,), rngs=forked, rng_path=())
        before = [_counts(s.rng_counters) for s in scopes]
        signature = _Signature(
            key,
            pack.mutable,
            tuple(sorted(pack.scope.frame.flags.items())),
            tuple(tuple(sorted(b.items(), key=repr)) for b in before),
        )
        call = _Call(pack)
        calls.append(call)
        try:
            y, out_groups = jitted(
                signature, pack.variable_groups, pack.rng_groups, *args, **kwargs
            )
        finally:
            calls.pop()
        if call.traced:
            consumed[signature] = [
                {k: v - b.get(k, 0) for k, v in _counts(s.rng_counters).items()}
                for s, b in zip(scopes, before)
            ]
        else:
            for s, delta in zip(scopes, consumed.get(signature, ())):
                _advance(s.rng_counters, delta)
        pack.publish(out_groups)
        return y

    return lifted


def _freeze(value: Any, where: str) -> Any:
    if isinstance(value, Module):
        fields = type(value)._field_names
        return (type(value), tuple((f, _freeze(value.__dict__[f], f"{where}.{f}")) for f in fields))
    if isinstance(value, Mapping):
        return tuple((k, _freeze(v, f"{where}.{k}")) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(value))
    try:
        hash(value)
    except TypeError:
        raise errors.TransformError(
            f"nn.jit keys its compiled code on the module's fields, but '{where}' holds an "
            f"unhashable {type(value).__name__}. Use a tuple or another hashable value."
        ) from None
    return value


def _call_key(call: InnerCall) -> tuple:
    """What a traced call depends on besides arrays: the configuration of the module
    and of the modules and Variables it reaches, not their names (as in Flax, equal
    siblings share one trace)."""
    where = call.cls.__name__
    refs = tuple(
        (
            type(obj),
            index,
            _freeze(hidden, where) if hidden is not None else (obj.collection, obj.name, obj.unbox),
        )
        for obj, index, hidden in call.refs
    )
    return (
        call.cls,
        _freeze(call.fields, where),
        call.in_compact,
        tuple(call.autoname.items()),
        refs,
    )


def _jit_method(fn: Callable, cls: Any, name: str, options: dict) -> Callable:
    current: list[InnerCall] = []

    def body(scope: Any, key: tuple, *args: Any, **kwargs: Any) -> Any:
        return current[-1](scope, *args, **kwargs)

    lifted = jit_scope(body, **options)
    unbound = jax.jit(
        lambda key, *args, **kwargs: fn(current[-1], *args, **kwargs),
        static_argnums=(0, *(i + 1 for i in options["static_argnums"])),
        static_argnames=options["static_argnames"],
    )

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.scope is None:  # e.g. a jitted init_with_output: the module is static
            current.append(self)
            try:
                return unbound(_freeze(self, type(self).__name__), *args, **kwargs)
            finally:
                current.pop()
        call = InnerCall(self, cls, fn, name, args, kwargs)
        current.append(call)
        try:
            return lifted(call.scope, _call_key(call), *call.args, **call.kwargs)
        finally:
            current.pop()

    return method


def _self_counted(options: dict) -> dict:
    # Counted with self as 0, as in Flax; self itself is never an array argument.
    for argnums in ("static_argnums", "donate_argnums"):
        options[argnums] = tuple(i - 1 for i in _as_tuple(options[argnums]) if i > 0)
    return options


jit = module_transform(jit_scope, "Jit", _jit_method, _self_counted)
