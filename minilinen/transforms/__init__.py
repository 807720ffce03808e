"""Lifted transforms: JAX transforms over modules, with Flax's parameters and RNGs.

Each takes a Module class (returning a subclass whose methods are transformed)
or a Module method (as a decorator). The ``*_scope`` variants lift plain
functions of a scope.
"""

from minilinen.transforms.autodiff import custom_vjp, grad, jvp, value_and_grad, vjp
from minilinen.transforms.control_flow import cond, switch, while_loop
from minilinen.transforms.jit import fold_rngs, fold_rngs_scope, jit, jit_scope
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
__all__ += ["fold_rngs", "fold_rngs_scope"]
__all__ += ["cond", "switch", "while_loop", "vjp", "jvp", "grad", "value_and_grad", "custom_vjp"]
