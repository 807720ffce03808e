"""minilinen: the Flax linen programming model, small and fast."""

from minilinen import initializers as initializers
from minilinen.core import FrozenDict
from minilinen.core.scope import DenyList
from minilinen.module import InterceptorContext, Module, compact, intercept_methods, nowrap
from minilinen.variables import Variable

__all__ = [
    "FrozenDict",
    "DenyList",
    "Module",
    "compact",
    "nowrap",
    "intercept_methods",
    "InterceptorContext",
    "Variable",
    "initializers",
]
