"""The Module system: dataclass modules mapped onto scopes.

A Module is a dataclass of hyperparameters. ``init``/``apply`` open a
``Frame`` and bind a clone of the module to its root ``Scope``; submodules
bind to child scopes, named by attribute (in ``setup``) or by class and
counter (in ``@compact``). Everything that does not change per call
(fields, which methods are compact) is worked out once per class.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from minilinen import config, errors
from minilinen.call_args import capture_filter, check_rngs, collections_for, resolve_method
from minilinen.call_args import merge_param as merge_param  # Flax: flax.linen.module.merge_param
from minilinen.core.frozen_dict import FrozenDict
from minilinen.core.meta import AxisMetadata
from minilinen.core.scope import Frame, Scope
from minilinen.functional import _INIT_MUTABLE as _DEFAULT_INIT_MUTABLE
from minilinen.functional import lazy_init as _lazy_init
from minilinen.module_context import (
    InterceptorContext,
    _wrap_method,
    call_method,
    context,
    intercept_methods,
)
from minilinen.module_context import disable_named_call as disable_named_call  # Flax has the
from minilinen.module_context import enable_named_call as enable_named_call  # named-call
from minilinen.module_context import override_named_call as override_named_call  # switches here
from minilinen.variables import Variable

__all__ = ["Module", "compact", "nowrap", "intercept_methods", "InterceptorContext"]


class _Unspecified:
    def __repr__(self) -> str:
        return "_unspecified_parent"

    def __reduce__(self) -> str:  # copies and (cloud)pickles are this one instance
        return "_UNSPECIFIED"


_UNSPECIFIED = _Unspecified()


class _WeakParent:
    """The ``parent`` field: a parent Module is held weakly (as in Flax), so a bound child
    and its parent make no cycle that keeps their scopes' tracers alive after a jit."""

    def __get__(self, module: Any, cls: Any = None) -> Any:
        parent = getattr(module, "__dict__", {}).get("parent", _UNSPECIFIED)  # None: the class
        return parent() if type(parent) is weakref.ref else parent

    def __set__(self, module: Any, value: Any) -> None:
        module.__dict__["parent"] = weakref.ref(value) if isinstance(value, Module) else value


# Names of Module's own API: never wrapped as user methods.
_RESERVED = frozenset(
    "param variable init init_with_output apply bind unbind clone setup sow make_rng has_rng "
    "has_variable get_variable put_variable is_initializing is_mutable_collection tabulate "
    "perturb copy module_paths".split()
)


def compact(fun: Callable) -> Callable:
    """Marks a method whose body may define submodules and variables inline."""
    fun.compact = True
    return fun


def nowrap(fun: Callable) -> Callable:
    """Marks a method that runs as plain Python: no setup, no module context."""
    fun.nowrap = True
    return fun


def _given_fields(module: Module, cache: Any = True, reset_names: bool = True) -> dict:
    """``module``'s field values with the submodules it holds replaced by unbound deep
    copies (one copy per instance, so sharing is kept). Only those it adopted when
    ``cache`` is True: the fields as given, for a lifted transform to re-adopt inside."""
    adopted_only, cache = cache is True, {} if cache is True else cache

    def fresh(m: Module, _: str) -> Module:
        if adopted_only and m.parent is not module:
            return m
        if id(m) not in cache:
            name = None if reset_names else m.name
            cache[id(m)] = m.clone(_deep_clone=cache, _reset_names=reset_names, name=name)
        return cache[id(m)]

    fields = module.__dict__
    return {
        f: _map_modules(fields[f], fresh) if _holds_modules(fields[f]) else fields[f]
        for f in module._field_names
    }


class _ModuleState:
    # Class-level defaults: a fresh state costs two dicts. ``misplaced``: made in a plain
    # method of a bound module, an error once assigned or called. ``transformed``: a lifted
    # transform's inner copy of a module whose setup ran outside; as in Flax, its setup
    # may bind again the names lifting reserved for the submodules passed in.
    setup_done = in_setup = in_compact = misplaced = transformed = False

    def __init__(self):
        self.autoname: dict[str, int] = {}
        self.children: dict[str, Module] = {}  # named submodules, for repr


def _map_modules(value: Any, fn: Callable[[Module, str], Module], suffix: str = "") -> Any:
    """Applies ``fn(module, suffix)`` to modules inside lists, tuples and dicts;
    lists become tuples and dicts FrozenDicts, as attributes set in setup do in Flax."""
    if isinstance(value, Module):
        return fn(value, suffix)
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return tuple(_map_modules(v, fn, f"{suffix}_{i}") for i, v in enumerate(value))
    if isinstance(value, Mapping):  # visited in sorted key order, as jax flattens a dict
        done = {k: _map_modules(value[k], fn, f"{suffix}_{k}") for k in sorted(value)}
        return FrozenDict({k: done[k] for k in value})
    return value


def _short_repr(value: Any) -> str:
    named = callable(value) and not isinstance(value, Module) and hasattr(value, "__name__")
    return value.__name__ if named else repr(value)


def _holds_modules(value: Any) -> bool:
    value = tuple(value.values()) if isinstance(value, Mapping) else value
    return isinstance(value, Module) or (
        isinstance(value, (list, tuple)) and any(map(_holds_modules, value))
    )


def _check_instance(module: Any) -> None:
    if not isinstance(module, Module):
        raise errors.InvalidInstanceModuleError(
            "init/apply/bind was called on the class, not an instance: write "
            f"Model().init(...), not Model.init(...) (got {type(module).__name__})."
        )
    if "_state" not in module.__dict__:
        module._state  # noqa: B018 (raises IncorrectPostInitOverrideError)


class Module:
    """Base class of all layers and models (subclasses are dataclasses)."""

    scope: Scope | None = None

    def __init_subclass__(cls, kw_only: bool = False, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        own = dict(cls.__dict__.get("__annotations__", {}))
        clash = {"parent", "name", "scope"} & set(own)
        if clash and "__dataclass_fields__" not in cls.__dict__:
            raise errors.ModuleFieldError(
                f"Module '{cls.__name__}' declares the field(s) {sorted(clash)}, which "
                "minilinen reserves for the module tree. Rename the field."
            )
        inherited = getattr(cls, "__dataclass_fields__", {})
        if "parent" not in inherited:
            own.update(parent=Any, name=Any)
            cls.parent = dataclasses.field(
                default=_UNSPECIFIED, kw_only=True, repr=False, compare=False, hash=False
            )
            cls.name = dataclasses.field(default=None, kw_only=True)
        cls.__annotations__ = own
        for attr, value in list(cls.__dict__.items()):
            plain = inspect.isfunction(value) and not hasattr(value, "nowrap")
            if attr in own or attr in _RESERVED or (attr.startswith("__") and attr != "__call__"):
                continue
            if plain and not getattr(value, "method_handler_wrapped", False):
                setattr(cls, attr, _wrap_method(value, attr))
        dataclasses.dataclass(
            cls, unsafe_hash="__hash__" not in cls.__dict__, repr=False, kw_only=kw_only
        )
        cls.parent = _WeakParent() if "parent" in own else cls.parent
        fields = cls.__dataclass_fields__  # Flax lists parent and name last in every subclass
        fields.update((k, fields.pop(k)) for k in ("parent", "name"))
        cls._field_names = tuple(f.name for f in dataclasses.fields(cls) if f.init)[:-2]
        cls._has_setup = cls.setup is not Module.setup

    # --- construction and naming ----------------------------------------

    def __post_init__(self) -> None:
        object.__setattr__(self, "_state", _ModuleState())
        parent = self.parent
        if parent is _UNSPECIFIED:
            parent = context.stack[-1] if context.stack else None
            object.__setattr__(self, "parent", parent)
        if parent is None:
            return
        if isinstance(parent, Scope):
            self._attach(None, parent)
            return
        if not isinstance(parent, Module):
            raise errors.ModuleFieldError(
                f"parent of {type(self).__name__} must be a Module, a Scope or None; got "
                f"{type(parent).__name__}."
            )
        pstate = parent._state
        if pstate.in_setup:
            if self.name is not None:  # otherwise named when assigned to an attribute
                self._attach(parent, parent.scope)
            return
        if pstate.in_compact:
            if self.name is None:
                prefix = type(self).__name__
                count = pstate.autoname.get(prefix, 0)
                pstate.autoname[prefix] = count + 1
                object.__setattr__(self, "name", f"{prefix}_{count}")
            self._attach(parent, parent.scope)
        elif parent.scope is not None:
            # Raised once it is assigned (naming the attribute) or called.
            self._state.misplaced = True

    def _attach(self, parent: Module | None, scope: Scope | None) -> None:
        """Binds this module to ``scope``'s child (its own name), or to ``scope`` itself
        when ``parent`` is None; then adopts the submodules its fields hold, as Flax
        does eagerly, so ``self.seq.layers[0]`` is bound when reached through a field."""
        if parent is not None:
            object.__setattr__(self, "parent", parent)
            pstate = parent._state
            pstate.children[self.name] = self
            scope = scope.push(self.name, reuse=pstate.in_setup and pstate.transformed)
        object.__setattr__(self, "scope", scope)
        fields = self.__dict__
        for field_name in self._field_names:
            value = fields[field_name]
            if isinstance(value, (Module, list, tuple, Mapping)) and _holds_modules(value):
                fields[field_name] = self._adopt(field_name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        state = self.__dict__.get("_state")  # None: the dataclass __init__ assigning fields
        if state is not None and state.in_setup:
            if name in self._field_names:
                raise errors.SetAttributeInModuleSetupError(
                    f"Cannot set the field '{name}' of {type(self).__name__} in setup(): "
                    "fields are set when the module is constructed. Use another attribute "
                    "name, or pass the value as an argument."
                )
            if isinstance(value, (Module, list, tuple, Mapping)):  # frozen, as in Flax
                value = self._adopt(name, value)
        elif state is not None and self.scope is not None:
            if _holds_modules(value):
                raise errors.SubmoduleOutsideSetupOrCompactError(
                    f"Cannot assign the submodule {type(value).__name__} to attribute '{name}' "
                    f"of '{self._path_text()}' outside setup(): define it in setup() "
                    f"(self.{name} = ...), or create it inline in an @nn.compact method."
                )
            raise errors.SetAttributeFrozenModuleError(
                f"Cannot set attribute '{name}' of module '{self._path_text()}' "
                f"({type(self).__name__}) outside setup(): a bound module is frozen. "
                "Assign attributes in setup(), or use module.clone(name=value) before binding."
            )
        object.__setattr__(self, name, value)

    def _adopt(self, attr: str, value: Any) -> Any:
        """Names and binds the submodules held by ``attr`` (in setup or a field)."""
        # Outside modules adopted in this call, by id: as in Flax, one instance held by
        # several modules of the tree (or twice by one) stays one shared submodule.
        adopted = self.scope.frame.adopted

        def adopt(module: Module, suffix: str) -> Module:
            if module.parent is None:
                # A module built outside (e.g. passed as a field): clone it into this
                # tree, keeping sharing between references to the same instance.
                key = id(module)
                if key in adopted:
                    return adopted[key]
                keep = getattr(
                    type(self), "preserve_adopted_names", config.flax_preserve_adopted_names
                )
                module = adopted[key] = module.clone(name=module.name if keep else None)
            elif module.name is not None:  # named and bound by its creator
                return module
            if module.name is None:  # named by attachment (unless flax_preserve_adopted_names)
                object.__setattr__(module, "name", f"{attr}{suffix}")
            module._attach(self, self.scope)
            return module

        return _map_modules(value, adopt)

    def _try_setup(self) -> None:
        state = self._state
        if state.setup_done or state.in_setup or self.scope is None:
            return
        state.in_setup = True
        context.stack.append(self)
        try:
            if self._has_setup:
                call_method(self, "setup", type(self).setup, (), {})
        finally:
            context.stack.pop()
            state.in_setup = False
            state.setup_done = True

    def setup(self) -> None:
        """Override to define submodules and variables; runs lazily once bound."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "scope":
            raise AttributeError(name)
        if name in ("_state", "_field_names"):
            raise errors.IncorrectPostInitOverrideError(
                f"{type(self).__name__} overrides __post_init__ without calling "
                "super().__post_init__(); add that call."
            )
        attribute = inspect.getattr_static(type(self), name, None)
        if hasattr(attribute, "__get__") and not inspect.isfunction(attribute):
            try:  # a property or descriptor raised AttributeError: say so
                return attribute.__get__(self, type(self))
            except AttributeError as e:
                raise errors.DescriptorAttributeError(
                    f"Trying to access a property that raised AttributeError: "
                    f"{type(self).__name__}.{name} raised '{e}'."
                ) from e
        state = self.__dict__.get("_state")
        if state is not None and self.scope is not None and not state.setup_done:
            self._try_setup()
            if name in self.__dict__:
                return self.__dict__[name]
        cls = type(self).__name__
        if self.scope is None:
            raise errors.SetupAttributeUnboundError(
                f'"{cls}" object has no attribute "{name}". If "{name}" is defined in '
                "'.setup()', remember these fields are only accessible from inside 'init' "
                "or 'apply'."
            )
        raise errors.ModuleAttributeError(f'"{cls}" object has no attribute "{name}".')

    def __dir__(self) -> list[str]:
        self._try_setup()  # setup's attributes are part of a bound module
        return sorted(set(super().__dir__()) | set(self.__dict__))

    def __repr__(self) -> str:
        # Flax's layout: the fields (a named function by its name), then the submodules
        # named in this module so far.
        lines = [f"{k} = {_short_repr(getattr(self, k))}" for k in self._field_names]
        lines = ["# attributes", *lines] if lines else []
        if self._state.children:
            lines += ["# children", *(f"{k} = {v!r}" for k, v in self._state.children.items())]
        body = "".join("\n" + line for line in lines).replace("\n", "\n    ")
        return f"{type(self).__name__}({body}\n)" if lines else f"{type(self).__name__}()"

    def _path_text(self) -> str:
        return self.scope.path_text if self.scope is not None else type(self).__name__

    def _require_scope(self, what: str) -> Scope:
        scope = self.scope
        if scope is None:
            raise errors.UnboundModuleError(
                f"{type(self).__name__}.{what}() needs the variables and RNGs of a bound module "
                "but was called on an unbound module: call it inside init()/apply(), or bind()."
            )
        return scope

    @property
    def path(self) -> tuple[str, ...]:
        """The names from the root module down to this one."""
        return self._require_scope("path").path

    @property
    def variables(self) -> FrozenDict:
        """This module's variables, by collection."""
        return config.returned(self._require_scope("variables").collections())

    # --- variables and RNG ----------------------------------------------

    def param(
        self, name: str, init_fn: Callable, *init_args: Any, unbox: bool = True, **init_kwargs: Any
    ) -> Any:
        """Declares (at init) or reads (at apply) parameter ``name``."""
        value = self._require_scope("param").param(name, init_fn, init_args, init_kwargs)
        if unbox and isinstance(value, AxisMetadata):
            return value.unbox()
        return value

    def variable(
        self,
        col: str,
        name: str,
        init_fn: Callable | None = None,
        *init_args: Any,
        unbox: bool = True,
        **init_kwargs: Any,
    ) -> Variable:
        """Declares (when ``col`` is mutable) or reads variable ``col/name``."""
        scope = self._require_scope("variable")
        scope.reserve(name, col)
        if not scope.has_variable(col, name):
            if not scope.is_mutable_collection(col) or init_fn is None:
                why = "no init_fn was given" if init_fn is None else f"'{col}' is immutable"
                absent = scope._collection(col) is None  # Flax's ScopeCollectionNotFound
                raise (errors.ScopeCollectionNotFound if absent else errors.VariableNotFoundError)(
                    f"No variable '{col}/{name}' in module '{scope.path_text}', and it cannot "
                    f"be created here: {why}. Pass the '{col}' collection in the variables "
                    f"given to apply(), or make it mutable (mutable=['{col}'])."
                )
            scope.put_variable(col, name, init_fn(*init_args, **init_kwargs))
        return Variable(scope, col, name, unbox)

    def has_variable(self, col: str, name: str) -> bool:
        return self._require_scope("has_variable").has_variable(col, name)

    def get_variable(self, col: str, name: str, default: Any = None) -> Any:
        return self._require_scope("get_variable").get_variable(col, name, default)

    def put_variable(self, col: str, name: str, value: Any) -> None:
        self._require_scope("put_variable").put_variable(col, name, value)

    def is_mutable_collection(self, col: str) -> bool:
        return self._require_scope("is_mutable_collection").is_mutable_collection(col)

    def is_initializing(self) -> bool:
        """True inside ``init``/``init_with_output``."""
        return bool(self._require_scope("is_initializing").frame.flags.get("initializing"))

    def make_rng(self, name: str = "params") -> jax.Array:
        """A fresh PRNG key from stream ``name``, unique to this module and call."""
        return self._require_scope("make_rng").make_rng(name)

    def has_rng(self, name: str) -> bool:
        return self._require_scope("has_rng").has_rng(name)

    def sow(
        self,
        col: str,
        name: str,
        value: Any,
        reduce_fn: Callable = lambda xs, x: xs + (x,),
        init_fn: Callable = lambda: (),
    ) -> bool:
        """Stores ``value`` in ``col/name`` if ``col`` is mutable; returns whether it did."""
        scope = self._require_scope("sow")
        if not scope.is_mutable_collection(col):
            return False
        if scope.has_variable(col, name):
            xs = scope.get_variable(col, name)
        else:
            scope.reserve(name, col)
            xs = init_fn()
        scope.put_variable(col, name, reduce_fn(xs, value))
        return True

    def perturb(self, name: str, value: Any, collection: str = "perturbations") -> Any:
        """Adds a zero-initialized variable to ``value`` so ``grad`` can see ``value``."""
        scope = self._require_scope("perturb")
        if scope.is_mutable_collection(collection) and not scope.has_variable(collection, name):
            scope.reserve(name, collection)
            scope.put_variable(collection, name, jax.tree_util.tree_map(jnp.zeros_like, value))
        if collection in scope.frame.variables:
            if not scope.has_variable(collection, name):
                raise errors.VariableNotFoundError(
                    f"Perturbation collection '{collection}' is present but has no '{name}' "
                    f"in module '{scope.path_text}'. Re-create the perturbations with init()."
                )
            value = jax.tree_util.tree_map(jnp.add, value, scope.get_variable(collection, name))
        return value

    # --- init / apply / bind --------------------------------------------

    def clone(
        self, *, parent: Any = None, _deep_clone: Any = False, _reset_names: bool = False, **updates
    ) -> Module:
        """A copy with ``updates`` applied, unbound unless ``parent`` is given.

        ``_deep_clone`` also copies the submodules held in fields (unbound; sharing
        kept), ``_reset_names`` drops their names too.
        """
        if _deep_clone is False:
            attrs = {f: self.__dict__[f] for f in self._field_names}
        else:
            attrs = _given_fields(self, {} if _deep_clone is True else _deep_clone, _reset_names)
        return type(self)(parent=parent, **{**attrs, "name": self.name, **updates})

    def copy(self, *, parent: Any = _UNSPECIFIED, name: str | None = None, **updates) -> Module:
        """A deep copy with ``updates``; in a compact method it becomes a new child."""
        return self.clone(parent=parent, name=name, _deep_clone=True, **updates)

    def _bound_to(self, scope: Scope) -> Module:
        # A bound submodule's init/apply gets its own tree: fresh copies of what it adopted.
        return self.clone(parent=scope, **_given_fields(self))

    def _run(self, frame: Frame, capture: Any, method: Any, args: tuple, kwargs: dict) -> Any:
        frame.capture = capture  # which calls sow their outputs (capture_intermediates)
        module = self._bound_to(Scope(frame))
        fn = resolve_method(module, method, Module)
        try:
            return fn(module, *args, **kwargs)
        finally:
            frame.valid, frame.adopted = False, {}  # {}: no cycle keeps its tracers alive

    def init_with_output(
        self,
        rngs: Any,
        *args: Any,
        method: Any = None,
        mutable: Any = _DEFAULT_INIT_MUTABLE,
        capture_intermediates: bool | Callable = False,
        **kwargs: Any,
    ) -> tuple[Any, FrozenDict]:
        """Runs ``method`` creating variables; returns ``(output, variables)``."""
        _check_instance(self)
        rngs = check_rngs(rngs, "init")
        mutable, capture = capture_filter(mutable, capture_intermediates)
        frame = Frame({}, rngs, mutable, {"initializing": True})
        out = self._run(frame, capture, method, args, kwargs)
        return out, config.returned(frame.mutated())

    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> FrozenDict:
        """Initializes the module's variables from ``rngs`` and example inputs (takes
        ``init_with_output``'s ``method``, ``mutable`` and ``capture_intermediates``)."""
        return Module.init_with_output(self, rngs, *args, **kwargs)[1]

    def lazy_init(
        self, rngs: Any, *args: Any, method: Any = None, mutable: Any = _DEFAULT_INIT_MUTABLE, **kw
    ) -> FrozenDict:
        """``init`` computing only the variables: inputs may be ``jax.ShapeDtypeStruct``s."""
        run = functools.partial(self.init, method=method, mutable=mutable)
        return _lazy_init(run)(rngs, *args, **kw)

    def apply(
        self,
        variables: Mapping,
        *args: Any,
        rngs: Any = None,
        method: Any = None,
        mutable: Any = False,
        capture_intermediates: bool | Callable = False,
        **kwargs: Any,
    ) -> Any:
        """Runs ``method`` with ``variables``; returns ``out`` or ``(out, mutated)``."""
        _check_instance(self)
        mutable, capture = capture_filter(mutable, capture_intermediates)
        frame = Frame(collections_for(variables, mutable), check_rngs(rngs, "apply"), mutable, {})
        out = self._run(frame, capture, method, args, kwargs)
        return out if mutable is False else (out, config.returned(frame.mutated()))

    def bind(
        self, variables: Mapping, *args: Any, rngs: Any = None, mutable: Any = False
    ) -> Module:
        """A copy bound to ``variables`` for interactive use outside apply."""
        _check_instance(self)
        frame = Frame(collections_for(variables, mutable), check_rngs(rngs, "bind"), mutable)
        return self._bound_to(Scope(frame))

    def unbind(self) -> tuple[Module, FrozenDict]:
        """Returns ``(unbound copy, variables)`` of a bound module."""
        self._require_scope("unbind")
        variables = self.variables
        return self.clone(name=None, _deep_clone=True, _reset_names=True), variables

    def module_paths(self, rngs: Any, *args: Any, **kwargs: Any) -> dict[str, Module]:
        """Every module called by an (abstract) ``init``, as unbound copies keyed by
        '/'-joined path ('' is this module), in the order their calls began."""
        from minilinen.summary import _trace  # the summary sits above; see tabulate

        kwargs.pop("show_repeated", None)  # the keys are paths: repeats land on one entry
        mutable = kwargs.pop("mutable", _DEFAULT_INIT_MUTABLE)
        calls, _ = _trace(self, rngs, mutable, args, kwargs)
        return {"/".join(call.path): call.module.copy(parent=None) for call in calls}

    def tabulate(self, rngs: Any, *args: Any, **kwargs: Any) -> str:
        """A table of every submodule call: shapes, variables and totals; takes the
        options of ``nn.tabulate`` (depth, show_repeated, mutable, ...) by keyword."""
        # Imported here: the summary sits above the module system and imports it.
        from minilinen.summary import tabulate

        options = {k: kwargs.pop(k) for k in inspect.signature(tabulate).parameters & kwargs.keys()}
        return tabulate(self, rngs, **options)(*args, **kwargs)
