"""The benchmark models, written once in linen style as functions of `nn`.

`models(nn)` builds the classes against `nn = minilinen` or `nn = flax.linen`,
so both libraries run exactly the same source.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import jax


@functools.cache
def models(nn: Any) -> types.SimpleNamespace:
    """The model classes of every workload, built against the library `nn`."""

    class SeedMLP(nn.Module):
        """Seed 002's network: 8 -> 32 -> 2 with a relu."""

        hidden: int = 32
        out: int = 2

        @nn.compact
        def __call__(self, x):
            x = nn.Dense(self.hidden)(x)
            x = nn.relu(x)
            return nn.Dense(self.out)(x)

    class CNN(nn.Module):
        """Two conv + BatchNorm + relu + avg-pool stages and a two-layer head."""

        features: tuple = (32, 64)
        hidden: int = 256
        classes: int = 10

        @nn.compact
        def __call__(self, x, train: bool):
            for f in self.features:
                x = nn.Conv(f, (3, 3))(x)
                x = nn.BatchNorm(use_running_average=not train)(x)
                x = nn.relu(x)
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
            x = x.reshape((x.shape[0], -1))
            x = nn.Dense(self.hidden)(x)
            x = nn.relu(x)
            return nn.Dense(self.classes)(x)

    class DeepMLP(nn.Module):
        """`depth` Dense layers of equal width with relu between them."""

        depth: int = 48
        width: int = 256

        @nn.compact
        def __call__(self, x):
            for i in range(self.depth):
                x = nn.Dense(self.width)(x)
                if i < self.depth - 1:
                    x = nn.relu(x)
            return x

    class Block(nn.Module):
        """A pre-LayerNorm transformer block with causal self-attention."""

        num_heads: int
        mlp_ratio: int = 4

        @nn.compact
        def __call__(self, x, mask):
            d = x.shape[-1]
            h = nn.LayerNorm()(x)
            h = nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(h, mask=mask)
            x = x + h
            h = nn.LayerNorm()(x)
            h = nn.Dense(self.mlp_ratio * d)(h)
            h = nn.gelu(h)
            h = nn.Dense(d)(h)
            return x + h

    class Transformer(nn.Module):
        """A decoder-only language model: embeddings, blocks, final norm and logits."""

        vocab: int
        seq: int
        d_model: int = 256
        num_heads: int = 4
        num_layers: int = 4

        @nn.compact
        def __call__(self, tokens):
            x = nn.Embed(self.vocab, self.d_model)(tokens)
            pos = self.param(
                "pos_embedding", jax.nn.initializers.normal(0.02), (self.seq, self.d_model)
            )
            x = x + pos
            mask = nn.make_causal_mask(tokens)
            for _ in range(self.num_layers):
                x = Block(self.num_heads)(x, mask)
            x = nn.LayerNorm()(x)
            return nn.Dense(self.vocab)(x)

    class ResBlock(nn.Module):
        """x + gelu(Dense(LayerNorm(x))), with the (carry, x) -> (carry, y) scan signature."""

        width: int

        @nn.compact
        def __call__(self, x, _):
            h = nn.LayerNorm()(x)
            h = nn.Dense(self.width)(h)
            return x + nn.gelu(h), None

    class BlockStack(nn.Module):
        """`depth` ResBlocks, unrolled in Python or run through `nn.scan`."""

        depth: int
        width: int = 256
        out: int = 16
        scan: bool = False

        @nn.compact
        def __call__(self, x):
            if self.scan:
                stack = nn.scan(
                    ResBlock,
                    variable_axes={"params": 0},
                    split_rngs={"params": True},
                    length=self.depth,
                )
                x, _ = stack(self.width, name="blocks")(x, None)
            else:
                for _ in range(self.depth):
                    x, _ = ResBlock(self.width)(x, None)
            return nn.Dense(self.out)(x)

    return types.SimpleNamespace(
        SeedMLP=SeedMLP,
        CNN=CNN,
        DeepMLP=DeepMLP,
        Transformer=Transformer,
        BlockStack=BlockStack,
    )


def has_scan(nn: Any) -> bool:
    """Whether `nn` offers the lifted `scan` transform (minilinen gains it with issue 5)."""
    return hasattr(nn, "scan")
