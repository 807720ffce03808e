"""The layer library, one file per kind; every public name is listed in ``__all__``."""

from minilinen.initializers import ones, ones_init, zeros, zeros_init
from minilinen.layers.activation import (
    PReLU,
    celu,
    elu,
    gelu,
    glu,
    hard_sigmoid,
    hard_silu,
    hard_swish,
    hard_tanh,
    leaky_relu,
    log_sigmoid,
    log_softmax,
    logsumexp,
    normalize,
    one_hot,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    soft_sign,
    softmax,
    softplus,
    standardize,
    swish,
    tanh,
)
from minilinen.layers.attention import (
    MultiHeadAttention,
    MultiHeadDotProductAttention,
    SelfAttention,
    combine_masks,
    dot_product_attention,
    dot_product_attention_weights,
    make_attention_mask,
    make_causal_mask,
)
from minilinen.layers.combinators import Sequential
from minilinen.layers.common import merge_param
from minilinen.layers.conv import Conv, ConvTranspose
from minilinen.layers.linear import Dense, DenseGeneral, Einsum, Embed
from minilinen.layers.normalization import (
    BatchNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    RMSNorm,
)
from minilinen.layers.pooling import avg_pool, max_pool, min_pool, pool
from minilinen.layers.recurrent import (
    RNN,
    Bidirectional,
    GRUCell,
    LSTMCell,
    OptimizedLSTMCell,
    RNNCellBase,
    SimpleCell,
)
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
    # normalization
    "BatchNorm",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "InstanceNorm",
    # attention
    "MultiHeadDotProductAttention",
    "MultiHeadAttention",
    "SelfAttention",
    "dot_product_attention",
    "dot_product_attention_weights",
    "make_attention_mask",
    "make_causal_mask",
    "combine_masks",
    # recurrent
    "RNNCellBase",
    "LSTMCell",
    "OptimizedLSTMCell",
    "GRUCell",
    "SimpleCell",
    "RNN",
    "Bidirectional",
    # stochastic
    "Dropout",
    # pooling
    "pool",
    "avg_pool",
    "max_pool",
    "min_pool",
    # combinators
    "Sequential",
    # helpers and the initializers Flax also exports at the top level
    "merge_param",
    "zeros",
    "zeros_init",
    "ones",
    "ones_init",
    # activations
    "PReLU",
    "celu",
    "elu",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "normalize",
    "one_hot",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "standardize",
    "swish",
    "tanh",
]
