"""Lifted transforms on Modules: on a class (a subclass whose methods are lifted)
or on a method (a decorator).

A transformed method lifts its module's own scope. Inside the transform a
fresh copy of the module (the original class, same fields and name) is bound to
the inner scope and the original method runs on it, so ``setup``, ``@compact``
naming and submodules all work inside as they do outside.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax

from minilinen import errors
from minilinen.core.scope import Scope
from minilinen.module import Module, _given_fields, _wrap_method
from minilinen.variables import Variable

__all__ = ["lift_target", "bound_scope", "call_on_inner", "is_module_class", "OPTIONS_ONLY"]

# make_method(fn, cls, name, options) -> the lifted method (self, *args, **kwargs).
MakeMethod = Callable[[Callable, Any, str, dict], Callable]


def is_module_class(target: Any) -> bool:
    """A Module subclass, or a functools.partial of one."""
    if isinstance(target, functools.partial):
        return is_module_class(target.func)
    return inspect.isclass(target) and issubclass(target, Module)


# Passed as the target, a public transform returns its converted options instead.
OPTIONS_ONLY = object()


def lift_target(
    target: Any,
    prefix: str,
    make_method: MakeMethod,
    options: dict,
    methods: Any = None,
    public: Callable | None = None,
) -> Any:
    """Applies a lifted transform to a Module class or to a method.

    ``public`` is the user-facing transform itself: ``methods={name: kwargs}`` gives
    per-method keyword arguments, converted by calling it with ``OPTIONS_ONLY``.
    """
    if target is OPTIONS_ONLY:
        return options
    if is_module_class(target):
        return _lift_class(target, prefix, make_method, options, methods, public)
    if callable(target) and not isinstance(target, Module):
        if methods is not None:
            raise errors.TransformError(
                f"methods= applies to a Module class; nn.{prefix.lower()} was given the "
                f"function {getattr(target, '__name__', target)!r}."
            )
        name = getattr(target, "__name__", "__call__")
        inner = target if getattr(target, "method_handler_wrapped", False) else None
        inner = inner or _wrap_method(target, name)
        method = make_method(inner, None, name, options)
        return _mark_lifted(method, inner)
    raise errors.TransformError(
        f"nn.{prefix.lower()} transforms a Module class or a Module method, got "
        f"{type(target).__name__} {target!r}."
    )


def _lift_class(
    target: Any,
    prefix: str,
    make_method: MakeMethod,
    options: dict,
    methods: Any,
    public: Callable | None,
):
    partial = target if isinstance(target, functools.partial) else None
    cls = target.func if partial is not None else target
    if methods is None:
        per_method = {"__call__": options}
    elif isinstance(methods, (list, tuple)):
        per_method = {m: options for m in methods}
    elif isinstance(methods, Mapping) and public is not None:
        per_method = {}
        for m, opts in methods.items():
            try:
                per_method[m] = public(OPTIONS_ONLY, **opts)
            except TypeError as e:
                raise errors.TransformError(
                    f"methods['{m}'] of nn.{prefix.lower()} holds options it does not take: {e}"
                ) from None
    else:
        raise errors.TransformError(
            f"methods= must be None, a list of method names or a dict of per-method "
            f"options, got {type(methods).__name__}."
        )
    attrs: dict[str, Any] = {"__module__": cls.__module__}
    for name, opts in per_method.items():
        fn = getattr(cls, name, None)
        if fn is None or not callable(fn):
            raise errors.TransformError(
                f"nn.{prefix.lower()}({cls.__name__}) was asked to transform the method "
                f"'{name}', which {cls.__name__} does not have."
            )
        attrs[name] = _mark_lifted(make_method(fn, cls, name, opts), fn)
    new_name = prefix + cls.__name__
    attrs["__qualname__"] = new_name
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


def _inner_copy(module: Module, cls: type, scope: Scope) -> Module:
    values = _given_fields(module)
    for field_name, value in values.items():
        for leaf in jax.tree_util.tree_leaves(value, is_leaf=lambda x: isinstance(x, Module)):
            if isinstance(leaf, Module) and leaf.scope is not None:
                raise errors.TransformError(
                    f"Field '{field_name}' of {type(module).__name__} holds a bound module "
                    f"({leaf._path_text()}); lifted transforms lift only their own module's "
                    "variables. Pass an unbound module (created outside init/apply) or "
                    "create the submodule inside the transformed module."
                )
    return cls(parent=scope, name=module.name, **values)


def call_on_inner(
    module: Module, cls: Any, fn: Callable, name: str, scope: Scope, *args: Any, **kwargs: Any
) -> Any:
    """Runs ``fn`` on a copy of ``module`` bound to the transform's inner ``scope``."""
    inner = _inner_copy(module, type(module) if cls is None else cls, scope)
    # Naming continues across the transform boundary: a lifted method called from
    # inside a compact method names its submodules after the ones already made.
    outer_state, inner_state = module._state, inner._state
    inner_state.in_compact = outer_state.in_compact
    inner_state.autoname = outer_state.autoname
    out = fn(inner, *args, **kwargs)
    for leaf in jax.tree_util.tree_leaves(out, is_leaf=lambda x: isinstance(x, Module)):
        if isinstance(leaf, (Module, Variable)):
            raise errors.TransformedMethodReturnValueError(
                f"The transformed method '{name}' returned a {type(leaf).__name__}; a lifted "
                "transform can only return arrays and pytrees of arrays."
            )
    return out
