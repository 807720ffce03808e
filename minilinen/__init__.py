"""minilinen: the Flax linen programming model, small and fast.

Use it as ``import minilinen as nn`` wherever Flax code says
``from flax import linen as nn``.
"""

from minilinen import initializers as initializers
from minilinen.core import FrozenDict
from minilinen.core.scope import DenyList
from minilinen.flax_compat import install_as_flax
from minilinen.functional import apply, init, init_with_output
from minilinen.layers import *  # noqa: F403  (the layer library's __all__)
from minilinen.layers import __all__ as _layer_names
from minilinen.module import InterceptorContext, Module, compact, intercept_methods, nowrap
from minilinen.module_context import disable_named_call, enable_named_call, override_named_call
from minilinen.spmd import *  # noqa: F403  (spmd's __all__)
from minilinen.spmd import __all__ as _spmd_names
from minilinen.summary import tabulate
from minilinen.transforms import *  # noqa: F403  (the lifted transforms Flax has in nn)
from minilinen.transforms import __all__ as _transform_names
from minilinen.transforms.rnn import RNN, Bidirectional
from minilinen.transforms.scopes import compact_name_scope, share_scope
from minilinen.variables import Variable

__all__ = ["FrozenDict", "DenyList", "Module", "compact", "nowrap", "intercept_methods"]
__all__ += ["InterceptorContext", "Variable", "initializers", "tabulate", "install_as_flax"]
__all__ += ["apply", "init", "init_with_output", "share_scope", "compact_name_scope"]
__all__ += [*_transform_names, *_layer_names, *_spmd_names]
__all__ += ["enable_named_call", "disable_named_call", "override_named_call"]
__all__ += ["RNN", "Bidirectional"]
