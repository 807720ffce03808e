"""Per-thread module context: the stack of running modules, and method interceptors."""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["context", "InterceptorContext", "intercept_methods", "call_method"]


class _Context(threading.local):
    def __init__(self):
        self.stack: list[Any] = []  # the modules whose methods are running
        self.interceptors: list[Callable] = []


context = _Context()


@dataclasses.dataclass(frozen=True)
class InterceptorContext:
    """What an interceptor learns about the method call it wraps."""

    module: Any
    method_name: str
    orig_method: Callable


class intercept_methods:
    """Context manager: ``interceptor(next_fun, args, kwargs, context)`` wraps every
    module method call made inside it, ``setup`` included (used by ``tabulate``)."""

    def __init__(self, interceptor: Callable):
        self.interceptor = interceptor

    def __enter__(self):
        context.interceptors.append(self.interceptor)
        return self

    def __exit__(self, *exc: Any) -> None:
        context.interceptors.remove(self.interceptor)


def call_method(module: Any, name: str, fun: Callable, args: tuple, kwargs: dict) -> Any:
    """Calls ``fun(module, *args, **kwargs)`` through every active interceptor."""
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
