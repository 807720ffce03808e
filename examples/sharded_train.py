"""Train a small transformer sharded over a data x model device mesh, on JAX's own SPMD.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
        .venv/bin/python examples/sharded_train.py [--model 4] [--steps 50]

(The flag simulates 8 devices on a CPU; on a machine with 8 accelerators leave it
out.) Parameters carry logical axis names (``with_logical_partitioning``); rules
map them to the mesh axes ``data`` and ``model``. The parameters are initialized
directly sharded (``jax.jit`` with ``out_shardings`` from the partition specs), the
batch is split over ``data``, and XLA inserts the collectives. The script trains
the same model on one device too and checks the losses agree.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import minilinen as nn
from minilinen.partitioning import (
    PARTITION_NAME,
    get_partition_spec,
    logical_to_mesh_sharding,
    unbox,
    with_logical_partitioning,
)
from minilinen.transforms import scan

VOCAB, EMBED, HEADS, MLP, LAYERS = 32, 32, 4, 64, 2

# Logical axis -> mesh axis. Heads, hidden units and the vocabulary are split over
# 'model' (tensor parallelism); the batch over 'data'; the rest is replicated.
RULES = (("batch", "data"), ("heads", "model"), ("mlp", "model"), ("vocab", "model"))


def dense(features: int, names: tuple, name: str) -> nn.Dense:
    """A Dense whose kernel carries logical axis names."""
    init = with_logical_partitioning(nn.initializers.lecun_normal(), names)
    return nn.Dense(features, kernel_init=init, name=name)


class Block(nn.Module):
    """Pre-norm causal self-attention and MLP, as one step of a scan over layers."""

    @nn.compact
    def __call__(self, x: jax.Array, _: Any) -> tuple[jax.Array, None]:
        batch, length, _ = x.shape
        head_dim = EMBED // HEADS
        h = nn.LayerNorm()(x)
        q, k, v = (
            dense(EMBED, ("embed", "heads"), n)(h).reshape(batch, length, HEADS, head_dim)
            for n in ("query", "key", "value")
        )
        mask = nn.make_causal_mask(jnp.ones((batch, length)))
        h = nn.dot_product_attention(q, k, v, mask=mask).reshape(batch, length, EMBED)
        x = x + dense(EMBED, ("heads", "embed"), "out")(h)
        h = nn.gelu(dense(MLP, ("embed", "mlp"), "up")(nn.LayerNorm()(x)))
        return x + dense(EMBED, ("mlp", "embed"), "down")(h), None


class Transformer(nn.Module):
    """A decoder-only language model: embedding, scanned blocks, vocabulary head."""

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        embed_init = with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed"))
        x = nn.Embed(VOCAB, EMBED, embedding_init=embed_init)(tokens)
        blocks = scan(
            Block,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            length=LAYERS,
            metadata_params={PARTITION_NAME: "layers"},
        )
        x, _ = blocks(name="blocks")(x, None)
        return dense(VOCAB, ("embed", "vocab"), "head")(nn.LayerNorm()(x))


def make_batches(steps: int, batch: int = 16, length: int = 8, seed: int = 0) -> np.ndarray:
    """Token sequences following x[t+1] = (3 x[t] + 1) mod VOCAB from random starts."""
    starts = np.random.default_rng(seed).integers(0, VOCAB, size=(steps, batch, 1))
    seqs = [starts]
    for _ in range(length):
        seqs.append((3 * seqs[-1] + 1) % VOCAB)
    return np.concatenate(seqs, axis=-1).astype(np.int32)


def mesh_rules(mesh: Mesh) -> tuple:
    """The rules whose mesh axes exist in ``mesh`` (a data-only mesh replicates the rest)."""
    return tuple((logical, axis) for logical, axis in RULES if axis in mesh.axis_names)


def train(mesh: Mesh, steps: int = 10, seed: int = 0) -> tuple[list[float], Any]:
    """Trains on ``mesh``; returns the losses and the (sharded) parameters."""
    model, tx = Transformer(), optax.adam(3e-3)
    batches = make_batches(steps, seed=seed)
    sample = jnp.asarray(batches[0, :, :-1])
    rules = mesh_rules(mesh)

    # Shapes and partition specs without computing anything, then the shardings.
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(seed), sample)
    param_sharding = logical_to_mesh_sharding(get_partition_spec(abstract), mesh, rules)
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))

    # Initialized directly sharded: no device ever holds the whole unsharded model.
    init = jax.jit(lambda key: unbox(model.init(key, sample)), out_shardings=param_sharding)
    variables = init(jax.random.PRNGKey(seed))
    opt_state = jax.jit(tx.init)(variables["params"])

    def loss_fn(params: Any, tokens: jax.Array) -> jax.Array:
        logits = model.apply({"params": params}, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    @jax.jit
    def step(params: Any, opt_state: Any, tokens: jax.Array) -> tuple:
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        # Keep every parameter where its partition spec puts it, step after step.
        return jax.lax.with_sharding_constraint(params, param_sharding["params"]), opt_state, loss

    params, losses = variables["params"], []
    for tokens in batches:
        params, opt_state, loss = step(params, opt_state, jax.device_put(tokens, batch_sharding))
        losses.append(float(loss))
    return losses, params


def main() -> None:
    """Train on a data x model mesh over all devices and on one device; compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=int, default=4, help="devices along the model axis")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    devices = np.array(jax.devices())
    data = max(1, len(devices) // args.model)
    mesh = Mesh(devices[: data * args.model].reshape(data, args.model), ("data", "model"))
    print(f"mesh {dict(mesh.shape)} on {len(devices)} {jax.default_backend()} devices")
    losses, params = train(mesh, args.steps)
    kernel = params["blocks"]["up"]["kernel"]
    shard = kernel.addressable_shards[0].data.shape
    print(f"blocks/up/kernel {kernel.shape}: {kernel.sharding.spec}, one shard {shard}")
    single = Mesh(devices[:1].reshape(1, 1), ("data", "model"))
    reference, _ = train(single, args.steps)
    for i in range(0, args.steps, max(1, args.steps // 10)):
        print(f"step {i:3d}  loss {losses[i]:.5f}  (one device {reference[i]:.5f})")
    worst = max(abs(a - b) for a, b in zip(losses, reference))
    print(f"largest difference from one device: {worst:.2e}")


if __name__ == "__main__":
    main()
