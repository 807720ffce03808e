"""Per-thread module context: the stack of running modules, method interceptors, and
the wrapper every Module method gets (it runs the method inside that context), which
also labels the call with its module's name while named calls are on."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any

import jax

from minilinen import config, errors

__all__ = ["context", "InterceptorContext", "intercept_methods", "call_method", "named_call"]


class _Context(threading.local):
    def __init__(self):
        self.stack: list[Any] = []  # the modules whose methods are running
        self.interceptors: list[Callable] = []

    def __reduce__(self) -> str:  # pickled methods of local Module classes refer to it
        return "context"


context = _Context()


@dataclasses.dataclass(frozen=True)
class InterceptorContext:
    """What an interceptor learns about the method call it wraps."""

    module: Any
    method_name: str
    orig_method: Callable


@contextlib.contextmanager
def intercept_methods(interceptor: Callable):
    """Context manager: ``interceptor(next_fun, args, kwargs, context)`` wraps every
    module method call made inside it, ``setup`` included (used by ``tabulate``)."""
    context.interceptors.append(interceptor)
    try:
        yield
    finally:
        context.interceptors.remove(interceptor)


def call_method(module: Any, name: str, fun: Callable, args: tuple, kwargs: dict) -> Any:
    """Calls ``fun(module, *args, **kwargs)`` through every active interceptor, inside a
    ``jax.named_scope`` named after the module while named calls are on."""
    if _PROFILE[0]:
        with jax.named_scope(_profile_name(module, name)):
            return _intercepted(module, name, fun, args, kwargs)
    return _intercepted(module, name, fun, args, kwargs)


def _intercepted(module: Any, name: str, fun: Callable, args: tuple, kwargs: dict) -> Any:
    interceptors = context.interceptors
    if not interceptors:
        return fun(module, *args, **kwargs)
    call = functools.partial(fun, module)
    info = InterceptorContext(module, name, call)
    for interceptor in reversed(interceptors):
        call = functools.partial(_through, interceptor, call, info)
    return call(*args, **kwargs)


def _through(interceptor: Callable, next_fun: Callable, info: InterceptorContext, *args, **kw):
    return interceptor(next_fun, args, kw, info)


def _wrap_method(fun: Callable, name: str) -> Callable:
    """``fun`` run in its module's context: setup first, the module stack, compact
    naming (names are freed when the outermost compact call ends) and capture."""
    is_compact = getattr(fun, "compact", False)

    @functools.wraps(fun)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.scope is None:
            if self._state.misplaced:
                raise errors.SubmoduleOutsideSetupOrCompactError(
                    f"Submodule {type(self).__name__} must be defined in `setup()` or in a method "
                    f"wrapped in `@compact`, not in a plain method of '{self.parent._path_text()}'."
                )
            if is_compact:
                raise errors.UnboundModuleError(
                    f"Can't call compact methods on unbound modules ('{type(self).__name__}."
                    f"{name}'). Use module.init(rng, ...) or module.apply(variables, "
                    "...), or module.bind(variables) for interactive use."
                )
            return call_method(self, name, fun, args, kwargs)
        state = self._state
        if not state.setup_done:
            self._try_setup()
        scope = self.scope  # after setup: nn.share_scope may have moved it
        outermost = is_compact and not state.in_compact
        state.in_compact |= is_compact
        context.stack.append(self)
        try:
            out = call_method(self, name, fun, args, kwargs)
        finally:
            context.stack.pop()
            if outermost:
                state.in_compact = False
                state.autoname.clear()
                scope.rewind()
        capture = scope.frame.capture
        if capture is not None and capture(self, name):
            self.sow("intermediates", name, out)
        return out

    wrapped.method_handler_wrapped = True
    return wrapped


# --- named calls (Flax's flax_profile): module methods labelled in jaxprs and profiles ---

_PROFILE = config._FLAGS["flax_profile"]  # [value, allowed]: read on every method call


def _profile_name(module: Any, method_name: str) -> str:
    suffix = "" if method_name == "__call__" else f".{method_name}"
    return f"{module.name or type(module).__name__}{suffix}"


def enable_named_call() -> None:
    """Runs every module method under a ``jax.named_scope`` named after its module, so
    profiles and compiled HLO show which module each operation belongs to."""
    config.update("flax_profile", True)


def disable_named_call() -> None:
    """Turns ``enable_named_call`` off (the default)."""
    config.update("flax_profile", False)


@contextlib.contextmanager
def override_named_call(enable: bool = True):
    """Context manager: named calls on (or off) inside it."""
    saved, _PROFILE[0] = _PROFILE[0], enable
    try:
        yield
    finally:
        _PROFILE[0] = saved


def named_call(class_fn: Callable, force: bool = True) -> Callable:
    """A Module method labelled with its module's name (``jax.named_call``); with
    ``force=False`` only while named calls are enabled. Never inside ``setup``."""

    @functools.wraps(class_fn)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        if (not force and not config.flax_profile) or self._state.in_setup:
            return class_fn(self, *args, **kwargs)
        name = _profile_name(self, class_fn.__name__)
        return jax.named_call(class_fn, name=name)(self, *args, **kwargs)

    return wrapped
