"""Lifted transforms on Modules: on a class (a subclass whose methods are lifted)
or on a method (a decorator).

A transformed method lifts its module's own scope. Inside the transform a
fresh copy of the module (the original class, same fields and name) is bound to
the inner scope and the original method runs on it, so ``setup``, ``@compact``
naming and submodules all work inside as they do outside.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from minilinen import errors
from minilinen.core.scope import Scope
from minilinen.module import Module, _given_fields, _wrap_method
from minilinen.transforms.lift import Pack, as_tuple
from minilinen.variables import Variable

__all__ = [
    "bound_scope",
    "lift_fns",
    "is_module_class",
    "InnerCall",
    "module_transform",
    "scope_method",
]

# make_method(fn, cls, name, options) -> the lifted method (self, *args, **kwargs).
MakeMethod = Callable[[Callable, Any, str, dict], Callable]


def is_module_class(target: Any) -> bool:
    """A Module subclass, or a functools.partial of one."""
    if isinstance(target, functools.partial):
        return is_module_class(target.func)
    return inspect.isclass(target) and issubclass(target, Module)


def _as_method(fn: Callable, name: str) -> Callable:
    """``fn`` run as a Module method (setup, compact naming), wrapped once."""
    return fn if getattr(fn, "method_handler_wrapped", False) else _wrap_method(fn, name)


def _lift_class(
    target: Any, prefix: str, make_method: MakeMethod, options: dict, methods: Any, to_options
):
    """A subclass of the Module class ``target`` whose ``methods`` are lifted: a list of
    names (each with ``options``) or ``{name: keyword arguments of the transform}``."""
    partial = target if isinstance(target, functools.partial) else None
    cls = target.func if partial is not None else target
    if methods is None:
        methods = ("__call__",)
    if isinstance(methods, (list, tuple)):
        per_method = {m: options for m in methods}
    elif isinstance(methods, Mapping):
        per_method = {}
        for m, opts in methods.items():
            try:
                per_method[m] = to_options(**opts)
            except TypeError as e:
                raise errors.TransformError(
                    f"methods['{m}'] of nn.{prefix.lower()} holds options it does not take: {e}"
                ) from None
    else:
        raise errors.TransformError(
            f"methods= must be None, a list of method names or a dict of per-method "
            f"options, got {type(methods).__name__}."
        )
    new_name = prefix + cls.__name__
    attrs: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": new_name}
    for name, opts in per_method.items():
        fn = getattr(cls, name, None)
        if fn is None or not callable(fn):
            raise errors.TransformError(
                f"nn.{prefix.lower()}({cls.__name__}) was asked to transform the method "
                f"'{name}', which {cls.__name__} does not have."
            )
        attrs[name] = _mark_lifted(make_method(fn, cls, name, opts), fn)
    lifted_cls = type(new_name, (cls,), attrs)
    if partial is not None:
        return functools.partial(lifted_cls, *partial.args, **partial.keywords)
    return lifted_cls


def _mark_lifted(method: Callable, fn: Callable) -> Callable:
    functools.update_wrapper(method, fn)
    # The module machinery must not wrap it again: the lifted method does not run
    # setup or compact naming on the outer module; its inner copy does.
    method.method_handler_wrapped = True
    return method


def bound_scope(module: Module, name: str) -> Scope:
    """The scope a lifted method lifts; raises on an unbound module."""
    scope = module.scope
    if scope is None:
        raise errors.UnboundModuleError(
            f"Cannot call the transformed method '{type(module).__name__}.{name}' on an "
            "unbound module. Use module.init(rng, ...) or module.apply(variables, ...)."
        )
    if not scope.frame.valid:
        scope.raise_invalid()
    return scope


@dataclasses.dataclass(frozen=True)
class _Slot:
    """Stands for a module or Variable bound elsewhere: a pytree with no leaves, so
    every JAX transform passes it through (and ``jax.jit`` keys on its index)."""

    index: int


jax.tree_util.register_pytree_node(_Slot, lambda s: ((), s.index), lambda i, _: _Slot(i))


def _is_ref(x: Any) -> bool:
    return isinstance(x, (Module, Variable))


class InnerCall:
    """One call of a lifted method: the scopes it reaches (its module's own, then those
    of modules and Variables bound elsewhere that its fields or arguments hold, as
    Flax's multi-scope lifting does) and how to rebuild them on the inner scopes.

    Called as ``(inner_scope_or_scopes, *args, **kwargs)``; ``args``/``kwargs`` then
    hold ``_Slot``s in place of the bound objects. Compact naming continues across
    the boundary from a snapshot taken once, so every trace names alike (as Flax).
    """

    def __init__(self, module: Module, cls: Any, fn: Callable, name: str, args=(), kwargs=None):
        self.module, self.fn, self.name = module, fn, name
        self.cls = type(module) if cls is None else cls
        state = module._state
        self.in_compact, self.autoname = state.in_compact, dict(state.autoname)
        self.scopes: list[Scope] = [bound_scope(module, name)]
        self.refs: list[tuple] = []  # per _Slot: (object, (scope index, names), fields)
        self._seen: dict[int, _Slot] = {}
        fields = _given_fields(module)
        self.fields = {f: self.hide(fields[f], module) for f in self.cls._field_names}
        self.args, self.kwargs = self.hide((tuple(args), dict(kwargs or {})))

    @property
    def scope(self) -> Any:
        """What the scope-level transform lifts: one scope, or all of them."""
        return self.scopes[0] if len(self.scopes) == 1 else tuple(self.scopes)

    def hide(self, tree: Any, owner: Module | None = None) -> Any:
        if not isinstance(tree, (Module, Variable, list, tuple, Mapping)):
            return tree

        def one(x: Any) -> Any:
            if not _is_ref(x) or x.scope is None:
                return x
            if isinstance(x, Module) and owner is not None and x.parent is owner:
                # Adopted by ``owner`` from one of its fields: the inner copy adopts anew.
                return x.clone(parent=None)
            slot = self._seen.get(id(x))
            if slot is None:
                slot = self._seen[id(x)] = _Slot(len(self.refs))
                place = self._place(x.scope)
                self.refs.append((x, place, None))
                if isinstance(x, Module):
                    hidden = {f: self.hide(x.__dict__[f], x) for f in type(x)._field_names}
                    self.refs[slot.index] = (x, place, hidden)
            return slot

        return jax.tree_util.tree_map(one, tree, is_leaf=_is_ref)

    def _place(self, scope: Scope) -> tuple[int, tuple[str, ...]]:
        """A lifted scope that is ``scope`` or holds it, and the names down to it: a
        scope under one already lifted is reached inside from there, not lifted twice."""
        for i, lifted in enumerate(self.scopes):
            n = len(lifted.path)
            if lifted.frame is scope.frame and scope.path[:n] == lifted.path:
                return i, scope.path[n:]
        self.scopes.append(scope)
        return len(self.scopes) - 1, ()

    def __call__(self, scope: Any, *args: Any, **kwargs: Any) -> Any:
        scopes = (scope,) if isinstance(scope, Scope) else scope
        built: dict[int, Any] = {}

        def show(tree: Any) -> Any:
            return jax.tree_util.tree_map(
                lambda x: build(x.index) if isinstance(x, _Slot) else x,
                tree,
                is_leaf=lambda x: isinstance(x, _Slot),
            )

        def build(i: int) -> Any:
            if i not in built:
                obj, (index, names), hidden = self.refs[i]
                where = scopes[index]
                for child in names:  # reserved, as Flax does: only the inner copy's setup
                    where = where.push(child, reuse=True)  # may bind the name again
                if isinstance(obj, Variable):
                    built[i] = Variable(where, obj.collection, obj.name, obj.unbox)
                else:
                    built[i] = type(obj)(parent=where, name=obj.name, **show(hidden))
            return built[i]

        fields = self.fields
        if self.refs:
            fields, args, kwargs = show((fields, args, kwargs))
        inner = self.cls(parent=scopes[0], name=self.module.name, **fields)
        inner_state = inner._state
        inner_state.in_compact, inner_state.autoname = self.in_compact, dict(self.autoname)
        inner_state.transformed = self.module._state.setup_done
        out = self.fn(inner, *args, **kwargs)
        self.module._state.autoname = dict(inner_state.autoname)
        for leaf in jax.tree_util.tree_leaves(out, is_leaf=_is_ref):
            if _is_ref(leaf):
                raise errors.TransformedMethodReturnValueError(
                    f"The transformed method '{self.name}' returned a {type(leaf).__name__}; "
                    "a lifted transform can only return arrays and pytrees of arrays."
                )
        return out


def lift_fns(
    fns: Sequence[Callable], mdl: Any, where: str, args: tuple, *filters: tuple
) -> tuple[Pack, list[InnerCall]]:
    """For the transforms that take the module as an argument (``nn.vjp(fn, mdl, x)``):
    one ``InnerCall`` per ``fn(mdl, *args)``, made once so that every trace of it names
    alike, and a ``Pack`` with ``filters`` (in, out, rngs) of the scopes they reach."""
    if not isinstance(mdl, Module):
        raise errors.TransformError(f"nn.{where} lifts a Module, got {type(mdl).__name__}.")
    calls = []
    for fn in fns:
        fn = getattr(fn, "__func__", fn)  # self.method: run it on the inner copy instead
        fn = _as_method(fn, getattr(fn, "__name__", where))
        calls.append(InnerCall(mdl, None, fn, where, args))
    return Pack(calls[0].scope, *filters), calls


def scope_method(scope_transform: Callable, no_kwargs: str | None = None) -> MakeMethod:
    """The usual ``make_method``: each call lifts the scopes the call reaches with
    ``scope_transform(body, **options)``. ``no_kwargs`` names the transform that, as
    in Flax, drops keyword arguments (with a warning saying how to pass them)."""

    def make_method(fn: Callable, cls: Any, name: str, options: dict) -> Callable:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            if no_kwargs and kwargs:
                warnings.warn(
                    f"nn.{no_kwargs} does not pass keyword arguments; {sorted(kwargs)} are "
                    "ignored (as in Flax). Pass them positionally, not mapped over.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                kwargs = {}
            call = InnerCall(self, cls, fn, name, args, kwargs)
            return scope_transform(call, **options)(call.scope, *call.args, **call.kwargs)

        return method

    return make_method


def self_counted(*names: str) -> Callable[[dict], dict]:
    """Options converted from argnums counted with ``self`` as 0 (as in Flax) to
    argnums of the scope-level transform, which counts from the first argument."""

    def convert(options: dict) -> dict:
        for name in names:
            options[name] = tuple(i - 1 for i in as_tuple(options[name]) if i > 0)
        return options

    return convert


def module_transform(
    scope_transform: Callable,
    prefix: str,
    make_method: MakeMethod | None = None,
    convert: Callable[[dict], dict] | None = None,
    no_kwargs: str | None = None,
) -> Callable:
    """The public, Module-level transform over ``scope_transform(fn, **options)``: it
    takes ``scope_transform``'s options (same names, order and defaults) plus
    ``methods=``; ``convert`` adapts them (e.g. argnums counted with ``self``).
    Applied to a Module class it returns a subclass whose methods are lifted; to a
    method (as a decorator), the lifted method."""
    signature = inspect.signature(scope_transform)
    make_method = make_method or scope_method(scope_transform, no_kwargs)
    where = f"nn.{prefix.lower()}"

    def to_options(*args: Any, **kwargs: Any) -> dict:
        try:
            bound = signature.bind(None, *args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{where}: {e}") from None
        bound.apply_defaults()
        options = bound.arguments
        options.pop(next(iter(signature.parameters)))
        return options if convert is None else convert(options)

    def transform(target: Any, *args: Any, methods: Any = None, **kwargs: Any) -> Any:
        options = to_options(*args, **kwargs)
        if is_module_class(target):
            return _lift_class(target, prefix, make_method, options, methods, to_options)
        if not callable(target) or isinstance(target, Module):
            raise errors.TransformError(
                f"{where} transforms a Module class or a Module method, got "
                f"{type(target).__name__} {target!r}."
            )
        if methods is not None:
            raise errors.TransformError(
                f"methods= applies to a Module class; {where} was given the "
                f"function {getattr(target, '__name__', target)!r}."
            )
        name = getattr(target, "__name__", "__call__")
        inner = _as_method(target, name)
        return _mark_lifted(make_method(inner, None, name, options), inner)

    transform.__name__ = transform.__qualname__ = prefix.lower()
    transform.__doc__ = scope_transform.__doc__
    return transform
