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
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax

from minilinen import errors
from minilinen.core.scope import CollectionFilter, Scope
from minilinen.module import Module
from minilinen.transforms.lift import Pack
from minilinen.transforms.module_lift import bound_scope, call_on_inner, lift_target

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
    """Lifts ``fn(scope, key, *args, **kwargs)`` into ``jax.jit``; ``key`` is hashable and
    names the configuration (a new key compiles anew); argnums index ``args``."""
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

    def lifted(scope: Scope, key: Any, *args: Any, **kwargs: Any) -> Any:
        forked = {stream: scope.make_rng(stream) for stream in scope.frame.rngs}
        pack = Pack(scope, (variables,), (variables,), (rngs,), rngs=forked, rng_path=())
        before = _counts(scope.rng_counters)
        signature = _Signature(
            key,
            pack.mutable,
            tuple(sorted(scope.frame.flags.items())),
            tuple(sorted(before.items(), key=repr)),
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
            after = _counts(scope.rng_counters)
            consumed[signature] = {k: v - before.get(k, 0) for k, v in after.items()}
        else:
            _advance(scope.rng_counters, consumed.get(signature, {}))
        pack.publish(out_groups)
        return y

    return lifted


def _freeze(value: Any, where: str) -> Any:
    if isinstance(value, Module):
        return _fingerprint(value, where)
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


def _fingerprint(module: Module, where: str) -> tuple:
    fields = tuple(
        (f, _freeze(module.__dict__[f], f"{where}.{f}")) for f in type(module)._field_names
    )
    return (type(module), module.name, fields)


class _ModuleKey:
    """Hashable by the module's configuration; holds the module itself weakly."""

    __slots__ = ("ref", "fingerprint", "__weakref__")

    def __init__(self, module: Module):
        self.ref = weakref.ref(module)
        self.fingerprint = _fingerprint(module, type(module).__name__)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ModuleKey) and self.fingerprint == other.fingerprint


def _jit_method(fn: Callable, cls: Any, name: str, options: dict) -> Callable:
    def body(scope: Scope, key: _ModuleKey, *args: Any, **kwargs: Any) -> Any:
        return call_on_inner(key.ref(), cls, fn, name, scope, *args, **kwargs)

    lifted = jit_scope(body, **options)

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return lifted(bound_scope(self, name), _ModuleKey(self), *args, **kwargs)

    return method


def jit(
    target: Any,
    variables: CollectionFilter = True,
    rngs: CollectionFilter = True,
    static_argnums: int | Iterable[int] = (),
    static_argnames: str | Iterable[str] = (),
    donate_argnums: int | Iterable[int] = (),
    device: Any = None,
    backend: str | None = None,
    methods: Any = None,
) -> Any:
    """A lifted ``jax.jit`` over a Module class or method.

    Args:
      static_argnums / donate_argnums: argument positions counting ``self`` as 0.
    """
    # Counted with self as 0, as in Flax; self itself is never an array argument.
    options = dict(
        variables=variables,
        rngs=rngs,
        static_argnums=tuple(i - 1 for i in _as_tuple(static_argnums) if i > 0),
        static_argnames=static_argnames,
        donate_argnums=tuple(i - 1 for i in _as_tuple(donate_argnums) if i > 0),
        device=device,
        backend=backend,
    )
    return lift_target(target, "Jit", _jit_method, options, methods, jit)
