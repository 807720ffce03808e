"""Train a small transformer sharded over a data x model device mesh, on JAX's own SPMD.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
        .venv/bin/python examples/sharded_train.py [--model 4] [--steps 50]

(The flag simulates 8 devices on a CPU; on a machine with 8 accelerators leave it
out.) Parameters carry logical axis names (``with_logical_partitioning``); rules
map them to the mesh axes ``data`` and ``model``. The parameters are initialized
directly sharded (``jax.jit`` with ``out_shardings`` from the partition specs), the
batch is split over ``data``, and XLA inserts the collectives. The script trains
the same model on one device too and checks the losses agree.

Many processes (hosts): start one per host with ``--num-processes N --process-id I
--coordinator HOST:PORT``; each feeds only its own rows of the batch. With
``--checkpoint-dir`` the state is saved through Orbax every ``--save-every`` steps,
each process writing only its own shards; ``--resume`` continues from the latest
saved step, restored straight onto the mesh. Two processes on one machine:

    for i in 0 1; do XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        .venv/bin/python examples/sharded_train.py --num-processes 2 --process-id $i \\
        --coordinator 127.0.0.1:12345 --checkpoint-dir /tmp/ckpt --steps 20 & done; wait
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


def init_distributed(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins this process to the others; call before any other JAX call."""
    # CPU devices of different processes talk through gloo; accelerators ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )


def local_rows(sharding: NamedSharding, shape: tuple) -> slice:
    """The rows of a global batch of ``shape`` that this process's devices hold."""
    rows = [index[0] for index in sharding.addressable_devices_indices_map(shape).values()]
    stops = [shape[0] if r.stop is None else r.stop for r in rows]
    return slice(min(r.start or 0 for r in rows), max(stops))


def train(
    mesh: Mesh,
    steps: int = 10,
    seed: int = 0,
    checkpoint_dir: str | None = None,
    save_every: int = 10,
    resume: bool = False,
) -> tuple[list[float], Any]:
    """Trains on ``mesh`` up to step ``steps``; returns the losses and the (sharded) parameters.

    With ``checkpoint_dir``, params and optimizer state are saved through Orbax
    every ``save_every`` steps; ``resume`` starts from the latest saved step, and
    the losses returned are those of the steps run here.
    """
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
    # Adam's moments sit where their parameters sit; its step count is replicated.
    opt_sharding = optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        jax.eval_shape(tx.init, unbox(abstract)["params"]),
        param_sharding["params"],
        transform_non_params=lambda _: NamedSharding(mesh, PartitionSpec()),
    )
    opt_state = jax.jit(tx.init, out_shardings=opt_sharding)(variables["params"])
    state = {"params": variables["params"], "opt_state": opt_state}

    def loss_fn(params: Any, tokens: jax.Array) -> jax.Array:
        logits = model.apply({"params": params}, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    @jax.jit
    def step(state: dict, tokens: jax.Array) -> tuple:
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], tokens)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        # Keep every parameter where its partition spec puts it, step after step.
        params = jax.lax.with_sharding_constraint(params, param_sharding["params"])
        return {"params": params, "opt_state": opt_state}, loss

    start, manager = 0, None
    if checkpoint_dir is not None:
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=save_every)
        manager = ocp.CheckpointManager(checkpoint_dir, options=options)
        if resume and manager.latest_step() is not None:
            # The fresh state is the template: each array comes back onto its sharding.
            start = manager.latest_step()
            state = manager.restore(start, args=ocp.args.StandardRestore(state))

    # Each process feeds only the rows of the batch its own devices hold.
    rows, losses = local_rows(batch_sharding, batches.shape[1:]), []
    for i in range(start, steps):
        local = batches[i, rows]
        tokens = jax.make_array_from_process_local_data(batch_sharding, local, batches.shape[1:])
        state, loss = step(state, tokens)
        losses.append(float(loss))
        if manager is not None:
            manager.save(i + 1, args=ocp.args.StandardSave(state))
    if manager is not None:
        manager.wait_until_finished()
        manager.close()
    return losses, state["params"]


def main(argv: list[str] | None = None) -> dict:
    """Train on a data x model mesh over all devices and on one device; compare."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=int, default=4, help="devices along the model axis")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--num-processes", type=int, default=1, help="one process per host")
    parser.add_argument("--process-id", type=int, default=0, help="0 .. num-processes - 1")
    parser.add_argument("--coordinator", default="127.0.0.1:12345", help="process 0's host:port")
    parser.add_argument("--checkpoint-dir", help="save through Orbax into this directory")
    parser.add_argument("--save-every", type=int, default=10, help="steps between checkpoints")
    parser.add_argument("--resume", action="store_true", help="continue from the latest step")
    args = parser.parse_args(argv)
    if args.num_processes > 1:
        init_distributed(args.coordinator, args.num_processes, args.process_id)
    say = print if jax.process_index() == 0 else lambda *_: None
    devices = np.array(jax.devices())
    data = max(1, len(devices) // args.model)
    mesh = Mesh(devices[: data * args.model].reshape(data, args.model), ("data", "model"))
    say(f"mesh {dict(mesh.shape)} on {len(devices)} {jax.default_backend()} devices")
    losses, params = train(mesh, args.steps, 0, args.checkpoint_dir, args.save_every, args.resume)
    start = args.steps - len(losses)
    kernel = params["blocks"]["up"]["kernel"]
    shard = kernel.addressable_shards[0].data.shape
    say(f"blocks/up/kernel {kernel.shape}: {kernel.sharding.spec}, one shard {shard}")
    say(f"trained steps {start}..{args.steps - 1}" + (" (resumed)" if start else ""))
    single = Mesh(np.array(jax.local_devices()[:1]).reshape(1, 1), ("data", "model"))
    reference = train(single, args.steps)[0][start:]
    for i in range(0, len(losses), max(1, len(losses) // 10)):
        say(f"step {start + i:3d}  loss {losses[i]:.5f}  (one device {reference[i]:.5f})")
    worst = max((abs(a - b) for a, b in zip(losses, reference)), default=0.0)
    say(f"largest difference from one device: {worst:.2e}")
    return {"start": start, "losses": losses, "reference": reference, "params": params}


if __name__ == "__main__":
    main()
