"""Orbax with parameters sharded over a 2x4 mesh, run by tests/test_orbax.py in a
fresh process with 8 simulated CPU devices (JAX fixes its device count at start).

    orbax_sharded_worker.py CHECKPOINT_DIR

Initializes a model directly sharded from its partition specs, saves it with
``ocp.StandardCheckpointer``, restores it onto the same ``NamedSharding``s and onto
other ones, and prints one JSON line describing every restored array.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

import minilinen as nn  # noqa: E402
from minilinen.traverse_util import flatten_dict  # noqa: E402


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        init = nn.initializers.lecun_normal()
        x = nn.Dense(16, kernel_init=nn.with_partitioning(init, ("data", "model")))(x)
        x = nn.relu(x)
        return nn.Dense(8, kernel_init=nn.with_partitioning(init, ("model", None)))(x)


def describe(restored, original) -> dict:
    out = {}
    flat_original = flatten_dict(original)
    for path, value in flatten_dict(restored).items():
        want = np.asarray(flat_original[path])
        shards = value.addressable_shards
        out["/".join(path)] = {
            "type": type(value).__name__,
            "spec": str(value.sharding.spec),
            "devices": sorted(s.device.id for s in shards),
            "shard_shapes": sorted({tuple(s.data.shape) for s in shards}),
            "shape": list(value.shape),
            # Each device holds exactly its own slice of the saved values.
            "shards_match": all(np.array_equal(np.asarray(s.data), want[s.index]) for s in shards),
            "equal": bool(np.array_equal(np.asarray(value), want)),
        }
    return out


def main() -> None:
    directory = Path(sys.argv[1])
    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    model, x = MLP(), jnp.ones((4, 8))
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    shardings = nn.get_sharding(abstract, mesh)
    init = jax.jit(lambda k: nn.unbox(model.init(k, x)), out_shardings=shardings)
    variables = init(jax.random.PRNGKey(0))

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / "sharded", variables)
    checkpointer.wait_until_finished()

    def template(target_shardings):
        return jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            nn.unbox(abstract),
            target_shardings,
        )

    same = checkpointer.restore(directory / "sharded", template(shardings))
    # Onto other shardings: everything replicated, and kernels split the other way round.
    replicated = jax.tree_util.tree_map(lambda _: NamedSharding(mesh, PartitionSpec()), shardings)
    swapped = jax.tree_util.tree_map(
        lambda s: NamedSharding(mesh, PartitionSpec(*reversed(s.spec))) if s.spec else s,
        shardings,
    )
    report = {
        "devices": jax.device_count(),
        "container": type(same).__name__,
        "params_container": type(same["params"]).__name__,
        "wanted": {"/".join(k): str(v.spec) for k, v in flatten_dict(shardings).items()},
        "same": describe(same, variables),
        "replicated": describe(
            checkpointer.restore(directory / "sharded", template(replicated)), variables
        ),
        "swapped": describe(
            checkpointer.restore(directory / "sharded", template(swapped)), variables
        ),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
