"""Flax's global flags, ``flax.config``: ``update(name, value)``, reads as attributes.

minilinen honours the flags whose effect a user can see. Flags naming behaviour
minilinen has in one fixed form accept only that value, so a setting is never
silently ignored; NNX's flags are refused (NNX is out of scope).
"""

from __future__ import annotations

from typing import Any

from minilinen import errors
from minilinen.core.frozen_dict import FrozenDict

# name -> [current value, the values minilinen can run with (None: any, honoured)]
_FLAGS: dict[str, list] = {
    # minilinen's own default is FrozenDicts (the seeds print them); install_as_flax()
    # sets Flax 0.12's default, plain dicts.
    "flax_return_frozendict": [True, None],
    "flax_preserve_adopted_names": [False, None],
    # Module methods under jax.named_scope (nn.enable_named_call). Flax's default is True;
    # minilinen's is False: a named scope costs every method call a context manager.
    "flax_profile": [False, None],
    # Fixed here: RNG folds as Flax's default (no separator), checkpoints are minilinen's
    # own msgpack files (no Orbax), tracebacks unfiltered.
    "flax_fix_rng_separator": [False, (False,)],
    "flax_use_orbax_checkpointing": [False, (False,)],
    "flax_filter_frames": [False, (False,)],
    "flax_use_flaxlib": [False, (False,)],
}
# Flax's flags for NNX (nnx_*, flax_array_ref, ...): refused, NNX is out of scope.
_NNX_FLAGS = "array_ref pytree_module max_repr_depth always_shard_variable hijax_variable"


def _flag(name: str) -> list:
    if name in _FLAGS:
        return _FLAGS[name]
    nnx = name.startswith("nnx_") or name[5:] in _NNX_FLAGS.split()
    why = "it configures NNX, which is out of scope" if nnx else "no such flag"
    raise errors.ConfigOptionError(
        f"Unrecognized config option: {name} ({why}). minilinen's flags: {', '.join(_FLAGS)}."
    )


def update(name: str, value: Any) -> None:
    """Sets flag ``name`` (e.g. ``'flax_return_frozendict'``) to ``value``."""
    allowed = _flag(name)[1]
    if allowed is not None and value not in allowed:
        raise errors.ConfigValueError(
            f"minilinen cannot set {name}={value!r}: it always behaves as {name}={allowed[0]!r}."
        )
    _FLAGS[name][0] = value


def returned(variables: dict) -> Any:
    """The variables ``init``/``apply`` hand back: FrozenDict or plain, per the flag."""
    return FrozenDict._wrap(variables) if _FLAGS["flax_return_frozendict"][0] else variables


def __getattr__(name: str) -> Any:
    return _flag(name)[0]  # ConfigOptionError is an AttributeError too
