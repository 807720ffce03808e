"""The functional core: variables by collection, RNG streams and mutability.

A ``Frame`` is one ``init``/``apply`` call: the variables (collection ->
nested plain dicts), the root RNG keys, and which collections may be written.
A ``Scope`` is one path inside a frame. Scopes know nothing about Modules.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minilinen import errors
from minilinen.core.frozen_dict import FrozenDict

__all__ = ["DenyList", "Frame", "Scope", "CollectionFilter", "in_filter", "fold_in_static"]

CollectionFilter = Any  # bool | str | Iterable[str] | DenyList
Array = jax.Array  # Flax's alias, imported from flax.core.scope by annotations


@dataclasses.dataclass(frozen=True)
class DenyList:
    """A collection filter matching every collection except ``deny``."""

    deny: CollectionFilter = dataclasses.field(hash=False)  # may be an (unhashable) list


def in_filter(filter_: CollectionFilter, col: str) -> bool:
    """Whether collection ``col`` matches ``filter_``."""
    if filter_ is True or filter_ is False:
        return filter_
    if isinstance(filter_, str):
        return col == filter_
    if isinstance(filter_, DenyList):
        return not in_filter(filter_.deny, col)
    if isinstance(filter_, Iterable):
        return any(in_filter(f, col) for f in filter_)
    raise errors.InvalidFilterError(
        f"Invalid collection filter {filter_!r}: use True, False, a collection name, "
        "a list of names, or DenyList(...)."
    )


def _static_bytes(item: str | int) -> bytes:
    if isinstance(item, str):
        return item.encode("utf-8")
    return item.to_bytes((item.bit_length() + 7) // 8, byteorder="big")


# Eager jax.random.fold_in costs ~0.4 ms in argument handling; the jitted one ~20 us
# and gives the same bits (the threefry mode is part of jit's cache key).
_fold_in = jax.jit(jax.random.fold_in)

# Initializers documented to ignore their key, compared by identity (any init_fn
# may be unhashable or define its own __eq__).
_ZEROS, _ONES = jax.nn.initializers.zeros, jax.nn.initializers.ones


def fold_in_static(key: jax.Array, data: tuple) -> jax.Array:
    """Folds the SHA-1 of static names and counters into ``key`` (Flax's derivation)."""
    if not data:
        return key
    digest = hashlib.sha1(b"".join(map(_static_bytes, data))).digest()
    return _fold_in(key, np.uint32(int.from_bytes(digest[:4], "big")))


class Frame:
    """The state of one ``init``/``apply``: variables, root RNG keys, mutability."""

    __slots__ = tuple("variables rngs mutable flags valid capture adopted _mutable_cache".split())

    def __init__(
        self,
        variables: dict,
        rngs: Mapping[str, jax.Array],
        mutable: CollectionFilter,
        flags: Mapping[str, Any] | None = None,
    ):
        self.variables = variables
        self.rngs = dict(rngs)
        self.mutable = mutable
        self.flags = dict(flags or {})
        self.valid = True
        self.capture: Callable | None = None  # which module calls sow their outputs
        self.adopted: dict = {}  # for the module layer: one copy per outside module
        self._mutable_cache: dict[str, bool] = {}

    def is_mutable(self, col: str) -> bool:
        cache = self._mutable_cache
        if col not in cache:
            cache[col] = in_filter(self.mutable, col)
        return cache[col]

    def mutated(self) -> dict:
        """The mutable collections, as plain dicts (the frame owns them)."""
        return {col: tree for col, tree in self.variables.items() if self.is_mutable(col)}


def _as_plain(tree: Any) -> Any:
    return tree._dict if isinstance(tree, FrozenDict) else tree


class Scope:
    """One path in a frame: reads and writes variables, derives RNG keys."""

    __slots__ = tuple(
        "frame parent name path rng_path rng_counters reservations children _cols "
        "__weakref__".split()
    )

    def __init__(
        self,
        frame: Frame,
        parent: Scope | None = None,
        name: str | None = None,
        path: tuple[str, ...] = (),
        rng_path: tuple[str, ...] = (),
    ):
        self.frame = frame
        self.parent = parent
        self.name = name
        if parent is None:
            # A lifted transform's inner root continues the outer path; its RNG
            # suffix can be shorter (nn.jit derives keys relative to its scope).
            self.path: tuple[str, ...] = path
            self.rng_path: tuple[str, ...] = rng_path
            self.rng_counters: dict = {}
        else:
            self.path = parent.path + (name,)
            self.rng_path = parent.rng_path + (name,)
            # Child counters live in the parent's counter dict (keyed by (name,)), so
            # a lifted inner scope sharing the parent's counters shares its children's.
            self.rng_counters = parent.rng_counters.setdefault((name,), {})
        self.reservations: dict[str, Any] = {}
        # Held weakly: a child scope lives while its module does, and a child never
        # keeps its parent's variables (tracers, under jit) alive through a cycle.
        self.children: dict[str, Scope] = weakref.WeakValueDictionary()
        self._cols: dict[str, dict] = {}

    # --- naming ---------------------------------------------------------

    @property
    def path_text(self) -> str:
        return "/" + "/".join(self.path)

    def reserve(self, name: str, col: str | None = None) -> None:
        """Claims ``name`` for a child scope (col None) or a variable in ``col``."""
        taken = self.reservations.get(name)
        if taken is None:
            if type(name) is not str:
                raise errors.InvalidNameError(
                    f"Names must be strings, got {name!r} ({type(name).__name__}) in "
                    f"module '{self.path_text}'."
                )
            self.reservations[name] = {col}
            return
        if col is None or None in taken or col in taken:
            what = "a submodule" if col is None else f"a variable in collection '{col}'"
            raise errors.NameInUseError(
                f"Duplicate use of the name '{name}' in module '{self.path_text}': {what} "
                "uses a name that is already taken. Give each submodule and variable of "
                "one module a distinct name."
            )
        taken.add(col)

    def rewind(self) -> None:
        """Frees names after a compact call so the next call can reuse them."""
        self.reservations.clear()

    def push(self, name: str, reuse: bool = False) -> Scope:
        """The child scope ``name``; its RNG counters live as long as the frame."""
        if not (reuse and name in self.reservations):
            self.reserve(name)
        child = self.children.get(name)
        if child is None:
            if "/" in name:
                raise errors.InvalidNameError(
                    f"Submodule name '{name}' in module '{self.path_text}' contains '/'."
                )
            child = self.children[name] = Scope(self.frame, self, name)
        return child

    # --- variables ------------------------------------------------------

    def _collection(self, col: str) -> dict | None:
        """This scope's dict inside collection ``col``, or None if absent."""
        found = self._cols.get(col)
        if found is not None:
            return found
        if self.parent is None:
            found = _as_plain(self.frame.variables.get(col))
        else:
            above = self.parent._collection(col)
            found = None if above is None else _as_plain(above.get(self.name))
        if found is not None:
            if not isinstance(found, dict):
                raise errors.ApplyVariablesError(
                    f"Expected a dict of variables at '{col}{self.path_text}', got "
                    f"{type(found).__name__}."
                )
            self._cols[col] = found
        return found

    def _writable_collection(self, col: str) -> dict:
        found = self._collection(col)
        if found is None:
            if self.parent is None:
                found = self.frame.variables[col] = {}
            else:
                found = self.parent._writable_collection(col)[self.name] = {}
            self._cols[col] = found
        return found

    def has_variable(self, col: str, name: str) -> bool:
        return name in (self._collection(col) or {})

    def get_variable(self, col: str, name: str, default: Any = None) -> Any:
        value = (self._collection(col) or {}).get(name, default)
        return FrozenDict._wrap(value) if type(value) is dict else value

    def put_variable(self, col: str, name: str, value: Any) -> None:
        if not self.frame.valid:
            self.raise_invalid()
        if not self.frame.is_mutable(col):
            raise errors.CollectionNotMutableError(
                f"Cannot write '{col}/{name}' in module '{self.path_text}': the '{col}' "
                f"collection is immutable here. Pass mutable=['{col}'] to apply() "
                "(or mutable=True)."
            )
        if isinstance(value, FrozenDict):
            value = value.unfreeze()
        self._writable_collection(col)[name] = value

    def is_mutable_collection(self, col: str) -> bool:
        return self.frame.is_mutable(col)

    def collections(self) -> dict:
        """All variables under this path, by collection (plain dicts, not copied)."""
        found = {col: self._collection(col) for col in self.frame.variables}
        return {col: tree for col, tree in found.items() if tree is not None}

    def raise_invalid(self) -> None:
        raise errors.ScopeInvalidatedError(
            f"Module '{self.path_text}' is used after the init/apply that bound it "
            "returned. Use the returned variables with a new apply() or bind()."
        )

    # --- parameters -----------------------------------------------------

    def param(self, name: str, init_fn: Callable, args: tuple, kwargs: dict) -> Any:
        """Reads parameter ``name``, creating it with ``init_fn`` when initializing."""
        self.reserve(name, "params")
        params = self._collection("params")
        if params is not None and name in params:
            value = params[name]
            _check_shapes(value, _abstract_init(init_fn, args, kwargs), name, self.path_text)
            return FrozenDict._wrap(value) if type(value) is dict else value
        if not self.frame.is_mutable("params"):
            raise self._missing_param(name)
        root, count = self._draw("params")
        # zeros/ones never read their key: the draw is still counted, so every later
        # key is unchanged, but the eager fold (~50 us per bias or norm scale) is skipped.
        key_free = init_fn is _ZEROS or init_fn is _ONES
        rng = root if key_free else fold_in_static(root, self.rng_path + (count,))
        value = init_fn(rng, *args, **kwargs)
        self.put_variable("params", name, value)
        return value

    def _missing_param(self, name: str) -> Exception:
        cols = list(self.frame.variables)
        hint = ""
        if "params" not in cols:
            hint = (
                f" The variables passed in have no 'params' collection (their top-level "
                f"keys are {cols}); if you passed variables['params'], pass "
                "{'params': params} instead."
            )
        # Flax names the case where this scope holds no params at all.
        absent = self._collection("params") is None
        return (errors.ScopeCollectionNotFound if absent else errors.ParamNotFoundError)(
            f"Could not find parameter '{name}' in module '{self.path_text}' (collection "
            f"'params').{hint} To create parameters call init(), or apply() with "
            "mutable=['params']."
        )

    # --- RNG streams ----------------------------------------------------

    def has_rng(self, stream: str) -> bool:
        return stream in self.frame.rngs

    def make_rng(self, stream: str = "params") -> jax.Array:
        """A fresh key for ``stream``, unique to this path and call count."""
        root, count = self._draw(stream)
        return fold_in_static(root, self.rng_path + (count,))

    def _draw(self, stream: str) -> tuple[jax.Array, int]:
        """Counts one draw from ``stream``: its root key and this path's draw number."""
        rngs = self.frame.rngs
        if stream not in rngs:
            if "params" not in rngs:
                raise errors.RngStreamMissingError(
                    f"{self.name} needs PRNG for \"{stream}\" (module '{self.path_text}'), but "
                    f"the call was given streams {sorted(rngs)}. Pass rngs={{'{stream}': key}} "
                    "to init()/apply()."
                )
            stream = "params"
        count = self.rng_counters.get(stream, 0) + 1
        self.rng_counters[stream] = count
        return rngs[stream], count


_ABSTRACT_KEY = jax.ShapeDtypeStruct((2,), np.uint32)


def _hashable(items: tuple) -> tuple:
    return tuple(_hashable(tuple(x)) if isinstance(x, (list, tuple)) else x for x in items)


# init_fn shapes, cached: checking a stored parameter's shape must not cost an
# abstract evaluation on every apply.
@functools.lru_cache(maxsize=4096)
def _init_shapes(init_fn: Callable, args: tuple, kwargs: tuple) -> Any:
    try:
        return jax.eval_shape(lambda key: init_fn(key, *args, **dict(kwargs)), _ABSTRACT_KEY)
    except Exception:  # an initializer that cannot run abstractly: skip the check
        return None


def _abstract_init(init_fn: Callable, args: tuple, kwargs: dict) -> Any:
    kwargs = tuple(kwargs.items())
    try:
        return _init_shapes(init_fn, args, kwargs)
    except TypeError:  # shapes are often given as lists; as tuples they make the same key
        try:
            return _init_shapes(init_fn, _hashable(args), _hashable(kwargs))
        except TypeError:  # still unhashable: evaluate every time
            return _init_shapes.__wrapped__(init_fn, args, kwargs)


def _check_shapes(value: Any, expected: Any, name: str, path_text: str) -> None:
    """Raises if ``value``'s shapes differ from ``expected``'s (None: nothing to check)."""
    if hasattr(expected, "shape") and hasattr(value, "shape"):
        if value.shape == expected.shape:
            return
        pairs = [(value, expected)]
    else:
        pairs = zip(jax.tree_util.tree_leaves(value), jax.tree_util.tree_leaves(expected))
    for got, want in pairs:
        if jnp.shape(got) != jnp.shape(want):
            raise errors.ParamShapeError(
                f"Parameter '{name}' in module '{path_text}' has shape {jnp.shape(got)} in "
                f"the given variables, but its initializer makes shape {jnp.shape(want)}. "
                "The module's configuration or input shapes differ from those used at "
                "init; re-initialize, or restore parameters that match this model."
            )
