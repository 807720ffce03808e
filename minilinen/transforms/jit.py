"""``nn.jit``: a lifted ``jax.jit`` over a module (or a function of a scope).

Each call first forks the RNG streams (one ``make_rng`` per stream on each lifted
scope, as Flax does), and keys inside derive from the forked keys with paths
relative to the jitted module. The compiled function is cached per module
configuration (not its name: equal siblings share one trace, as in Flax),
mutability and RNG counter state; when a call hits the cache no Python runs
inside, so the counters are advanced by what the first trace consumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax

from minilinen import errors
from minilinen.core.scope import CollectionFilter, Scope
from minilinen.module import Module
from minilinen.transforms.lift import Pack, as_tuple
from minilinen.transforms.module_lift import InnerCall, module_transform, self_counted
from minilinen.traverse_util import flatten_dict

__all__ = ["jit", "jit_scope", "fold_rngs", "fold_rngs_scope"]


def _forked_pack(scope: Any, variables: CollectionFilter, rngs: CollectionFilter) -> Pack:
    """A Pack whose RNG streams are forked, one ``make_rng`` per stream and scope: keys
    inside derive from them with paths relative to the lifted module."""
    scopes = (scope,) if isinstance(scope, Scope) else scope
    forked = [{stream: s.make_rng(stream) for stream in s.frame.rngs} for s in scopes]
    return Pack(scope, (variables,), (variables,), (rngs,), rngs=forked, rng_path=())


def fold_rngs_scope(
    fn: Callable, variables: CollectionFilter = True, rngs: CollectionFilter = True
):
    """Runs a Module class or method (at the scope level, ``fn(scope, *args, **kwargs)``)
    with its RNG streams forked as ``nn.jit`` forks them, without compiling it: its
    variables come out as under ``nn.jit``."""

    def lifted(scope: Any, *args: Any, **kwargs: Any) -> Any:
        pack = _forked_pack(scope, variables, rngs)
        y, out_groups = pack.run(fn, pack.variable_groups, pack.rng_groups, *args, **kwargs)
        pack.publish(out_groups)
        return y

    return lifted


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
    calls: list[list] = []  # [pack, traced?] of the calls in flight, innermost last

    def traced(signature: tuple, groups: tuple, rng_groups: tuple, *args, **kwargs):
        call = calls[-1]
        call[1] = True
        return call[0].run(fn, groups, rng_groups, signature[0], *args, **kwargs)

    # The jitted function takes (signature, variable groups, rng groups, *args).
    jitted = jax.jit(
        traced,
        static_argnums=(0, *(i + 3 for i in as_tuple(static_argnums))),
        static_argnames=as_tuple(static_argnames),
        donate_argnums=tuple(i + 3 for i in as_tuple(donate_argnums)),
        device=device,
        backend=backend,
    )
    left: dict[tuple, list] = {}  # signature -> the RNG counters its trace left, flat

    def lifted(scope: Any, key: Any, *args: Any, **kwargs: Any) -> Any:
        pack = _forked_pack(scope, variables, rngs)
        counters = [s.rng_counters for s in pack.scopes]
        flags = tuple(sorted(pack.scope.frame.flags.items()))
        counts = tuple(tuple(sorted(flatten_dict(c).items(), key=repr)) for c in counters)
        signature = (key, pack.mutable, flags, counts)
        call = [pack, False]
        calls.append(call)
        try:
            y, out = jitted(signature, pack.variable_groups, pack.rng_groups, *args, **kwargs)
        finally:
            calls.pop()
        if call[1]:
            left[signature] = [flatten_dict(c) for c in counters]
        # On a cache hit no Python ran inside: the counters become what the trace left.
        for c, flat in zip(counters, left.get(signature, ())):
            for (*children, stream), n in flat.items():
                node = c
                for child in children:  # keyed (name,), as Scope keeps them
                    node = node.setdefault(child, {})
                node[stream] = n
        pack.publish(out)
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
    """The configuration of the module and of the modules and Variables it reaches."""
    refs = tuple(
        (type(obj), place, (obj.collection, obj.name, obj.unbox) if hidden is None else hidden)
        for obj, place, hidden in call.refs
    )
    state = (call.in_compact, tuple(call.autoname.items()))
    return _freeze((call.cls, call.fields, state, refs), call.cls.__name__)


def _jit_method(fn: Callable, cls: Any, name: str, options: dict) -> Callable:
    current: list = []  # the InnerCall (or unbound module) being called, innermost last
    lifted = jit_scope(lambda scope, key, *a, **kw: current[-1](scope, *a, **kw), **options)
    # An unbound module (e.g. a jitted init_with_output) is a static argument.
    unbound = jax.jit(
        lambda key, *args, **kwargs: fn(current[-1], *args, **kwargs),
        static_argnums=(0, *(i + 1 for i in options["static_argnums"])),
        static_argnames=options["static_argnames"],
    )

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        call = self if self.scope is None else InnerCall(self, cls, fn, name, args, kwargs)
        current.append(call)
        try:
            if call is self:
                return unbound(_freeze(self, type(self).__name__), *args, **kwargs)
            return lifted(call.scope, _call_key(call), *call.args, **call.kwargs)
        finally:
            current.pop()

    return method


jit = module_transform(
    jit_scope, "Jit", _jit_method, self_counted("static_argnums", "donate_argnums")
)
fold_rngs = module_transform(fold_rngs_scope, "Fold_rngs")
