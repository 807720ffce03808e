"""Lifted transforms: JAX transforms over modules, with Flax's parameters and RNGs.

Each takes a Module class (returning a subclass whose methods are transformed)
or a Module method (as a decorator). Each module's ``*_scope`` variant (e.g.
``transforms.scan.scan_scope``) lifts a plain function of a scope.
"""

from minilinen.module_context import named_call  # no transform boundary: a named scope
from minilinen.transforms.autodiff import custom_vjp, grad, jvp, value_and_grad, vjp
from minilinen.transforms.control_flow import cond, switch, while_loop
from minilinen.transforms.jit import fold_rngs, jit
from minilinen.transforms.map_variables import add_metadata_axis, map_variables
from minilinen.transforms.remat import checkpoint, remat, remat_scan
from minilinen.transforms.scan import broadcast, scan
from minilinen.transforms.vmap import vmap

__all__ = ["scan", "vmap", "jit", "remat", "checkpoint", "remat_scan", "map_variables"]
__all__ += ["broadcast", "fold_rngs", "cond", "switch", "while_loop", "vjp", "jvp", "grad"]
__all__ += ["value_and_grad", "custom_vjp", "add_metadata_axis", "named_call"]
