"""``install_as_flax()``: one call at program start makes ``import flax`` mean minilinen.

A finder on ``sys.meta_path`` serves every ``flax`` path in ``_PATHS`` as a thin
proxy module whose attributes are looked up, on first use, in the minilinen
modules listed for it (first hit wins), so ``flax.linen.Dense is minilinen.Dense``.
A name or path minilinen lacks raises a named error that says so; nothing is
ever stood in for.
"""

from __future__ import annotations

import dis
import importlib
import importlib.util
import sys
import types
from typing import Any

from minilinen import config, errors


def _same(prefix: str, target: str, names: str) -> dict[str, tuple[str, ...]]:
    return {f"{prefix}.{n}": (f"{target}.{n}",) for n in names.split()}


# flax path -> the minilinen modules whose attributes it serves, first hit wins. Most
# keep their name: flax.linen.<layer kind> lives in minilinen.layers, the rest one up.
_PATHS: dict[str, tuple[str, ...]] = {
    "flax": (),
    "flax.linen": ("minilinen",),
    "flax.linen.dtypes": ("minilinen.layers.common",),
    "flax.typing": ("minilinen.typing",),
    # Flax keeps Conv, ConvTranspose and ConvLocal in linen/linear.py.
    "flax.linen.linear": ("minilinen.layers.linear", "minilinen.layers.conv"),
    # The cells are layers; RNN and Bidirectional, a lifted scan of a cell, are transforms.
    "flax.linen.recurrent": ("minilinen.layers.recurrent", "minilinen.transforms.rnn"),
    "flax.core": ("minilinen.core", "minilinen.core.meta", "minilinen.core.scope"),
    **_same("flax.linen", "minilinen.layers", "activation attention batch_apply combinators"),
    **_same("flax.linen", "minilinen.layers", "fp8_ops normalization pooling stochastic"),
    **_same("flax.linen", "minilinen", "initializers module partitioning spmd summary transforms"),
    **_same("flax.core", "minilinen.core", "frozen_dict meta scope"),
    **_same("flax", "minilinen", "errors jax_utils serialization struct traverse_util training"),
    **_same("flax.training", "minilinen.training", "train_state checkpoints common_utils"),
    **_same("flax.training", "minilinen.training", "dynamic_scale early_stopping"),
}
_IMPORT_FROM = dis.opmap["IMPORT_FROM"]
_MISSING = object()


def _import_error(path: str) -> ImportError:
    if path.split(".")[1:2] == ["nnx"]:
        why = f"{path}: NNX is out of scope for minilinen, which provides flax.linen only."
        return errors.NNXOutOfScopeError(why, name=path)
    why = f"{path} is not in minilinen (see the README's table of Flax import paths)."
    return errors.NotInMinilinenImportError(why, name=path)


class _FlaxProxy(types.ModuleType):
    """A ``flax`` module path; attributes come from its minilinen modules."""

    def __getattr__(self, name: str) -> Any:
        path = f"{self.__name__}.{name}"
        if path == "flax.config":  # the flags module itself: a proxy would cache flag values
            return config
        if path in _PATHS:
            return importlib.import_module(path)
        targets = self.__dict__["_minilinen_modules"]
        if name == "__all__":
            return [n for m in targets for n in getattr(m, "__all__", ())]
        if name.startswith("__"):  # __file__, __version__, ...: the proxy has none
            raise AttributeError(name)
        for module in targets:
            value = getattr(module, name, _MISSING)
            if value is not _MISSING:
                setattr(self, name, value)  # later reads skip this lookup
                return value
        caller = sys._getframe(1)
        if caller.f_code.co_code[caller.f_lasti] == _IMPORT_FROM:
            # `from flax.x import Name` turns an AttributeError into a bare "cannot
            # import name"; an ImportError of our own keeps the explanation.
            raise _import_error(path)
        raise errors.NotInMinilinenError(str(_import_error(path)), name=name, obj=self)

    def __dir__(self) -> list[str]:
        mine = [p.rpartition(".")[2] for p in _PATHS if p.rpartition(".")[0] == self.__name__]
        return sorted({*mine, *(n for m in self._minilinen_modules for n in dir(m))})


class _FlaxFinder:
    """The meta-path finder, and the loader of the proxies it finds."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "flax" and not fullname.startswith("flax."):
            return None
        if fullname not in _PATHS:
            raise _import_error(fullname)
        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        # Targets are found now, not at install: modules added to minilinen later just work.
        names = _PATHS[spec.name]
        targets = [importlib.import_module(n) for n in names if importlib.util.find_spec(n)]
        if names and not targets:
            raise _import_error(spec.name)
        module = _FlaxProxy(spec.name)
        module._minilinen_modules = targets
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install_as_flax() -> None:
    """Makes every ``flax`` import (``from flax import linen as nn``, ...) resolve to minilinen.

    Call it once at program start, before anything imports the real Flax. Also sets
    ``flax_return_frozendict`` to Flax 0.12's default, False: ``init``/``apply``
    return plain dicts, as code written for Flax 0.12 expects.
    """
    if any(isinstance(f, _FlaxFinder) for f in sys.meta_path):
        return
    real = sorted(m for m in sys.modules if m.split(".")[0] == "flax")
    if real:
        raise errors.RealFlaxImportedError(
            f"The real Flax is already imported ({', '.join(real[:3])}): call "
            "minilinen.install_as_flax() at program start, before anything imports flax."
        )
    sys.meta_path.insert(0, _FlaxFinder())
    config.update("flax_return_frozendict", False)
