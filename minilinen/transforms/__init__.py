"""Lifted transforms: JAX transforms over modules, with Flax's parameters and RNGs.

Each takes a Module class (returning a subclass whose methods are transformed)
or a Module method (as a decorator). The ``*_scope`` variants lift plain
functions of a scope.
"""

from minilinen.transforms import autodiff, control_flow
from minilinen.transforms.autodiff import *  # noqa: F403
from minilinen.transforms.control_flow import *  # noqa: F403
from minilinen.transforms.jit import jit, jit_scope
from minilinen.transforms.map_variables import map_variables, map_variables_scope
from minilinen.transforms.remat import (
    checkpoint,
    remat,
    remat_scan,
    remat_scan_scope,
    remat_scope,
)
from minilinen.transforms.scan import broadcast, scan, scan_scope
from minilinen.transforms.vmap import vmap, vmap_scope

__all__ = [
    "scan",
    "vmap",
    "jit",
    "remat",
    "checkpoint",
    "remat_scan",
    "map_variables",
    "broadcast",
    "scan_scope",
    "vmap_scope",
    "jit_scope",
    "remat_scope",
    "remat_scan_scope",
    "map_variables_scope",
]
__all__ += [*autodiff.__all__, *control_flow.__all__]
