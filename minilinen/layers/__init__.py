"""The layer library, one file per kind; every public name is listed in ``__all__``."""

from minilinen.initializers import ones, ones_init, zeros, zeros_init
from minilinen.layers import activation, attention, normalization, recurrent
from minilinen.layers.activation import *  # noqa: F403  (its __all__: jax.nn's functions, PReLU)
from minilinen.layers.attention import *  # noqa: F403  (its __all__: the attention API)
from minilinen.layers.batch_apply import BatchApply
from minilinen.layers.combinators import Sequential
from minilinen.layers.common import merge_param
from minilinen.layers.conv import Conv, ConvLocal, ConvTranspose
from minilinen.layers.linear import Dense, DenseGeneral, Einsum, Embed
from minilinen.layers.normalization import *  # noqa: F403  (its __all__: the norm layers)
from minilinen.layers.pooling import avg_pool, max_pool, min_pool, pool
from minilinen.layers.recurrent import *  # noqa: F403  (its __all__: the recurrent cells)
from minilinen.layers.stochastic import Dropout

__all__ = [
    # linear
    "Dense",
    "DenseGeneral",
    "Einsum",
    "Embed",
    # conv
    "Conv",
    "ConvTranspose",
    "ConvLocal",
    # normalization
    *normalization.__all__,
    # attention
    *attention.__all__,
    # recurrent cells (RNN and Bidirectional: transforms/rnn.py)
    *recurrent.__all__,
    # stochastic
    "Dropout",
    # pooling
    "pool",
    "avg_pool",
    "max_pool",
    "min_pool",
    # combinators
    "Sequential",
    "BatchApply",
    # helpers and the initializers Flax also exports at the top level
    "merge_param",
    "zeros",
    "zeros_init",
    "ones",
    "ones_init",
    # activations
    *activation.__all__,
]
