"""Multi-device checks, run in a fresh process by tests/test_sharding_multidevice.py.

JAX fixes its device count when it starts, so this script simulates 8 CPU devices
(``--xla_force_host_platform_device_count=8``) before importing it, runs every
check, and prints one JSON object; the test asserts on it.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, PartitionSpec  # noqa: E402
from sharded_train import mesh_rules, train  # noqa: E402

import minilinen as nn  # noqa: E402
from minilinen.partitioning import get_partition_spec, logical_to_mesh_axes  # noqa: E402
from minilinen.traverse_util import flatten_dict  # noqa: E402


def sharding_report(params: dict, mesh: Mesh, abstract_specs: dict) -> dict:
    """For every parameter: the spec its names ask for, the spec it has, shard shapes."""
    report = {}
    flat = flatten_dict(params)
    specs = flatten_dict(abstract_specs)
    for path, value in flat.items():
        wanted = logical_to_mesh_axes(specs[path], mesh_rules(mesh))
        report["/".join(path)] = {
            "wanted": str(wanted),
            "actual": str(value.sharding.spec),
            "equivalent": value.sharding.is_equivalent_to(
                jax.sharding.NamedSharding(mesh, wanted), value.ndim
            ),
            "shape": list(value.shape),
            "shard": list(value.addressable_shards[0].data.shape),
            "devices": len(value.sharding.device_set),
        }
    return report


def logical_specs(steps_sample: int = 1) -> dict:
    """The logical partition specs of the example model's parameters."""
    from sharded_train import Transformer, make_batches

    sample = jnp.asarray(make_batches(steps_sample)[0, :, :-1])
    abstract = jax.eval_shape(Transformer().init, jax.random.PRNGKey(0), sample)
    return get_partition_spec(abstract)["params"]


def batchnorm_under_shard_map() -> dict:
    """BatchNorm with axis_name under shard_map vs the same batch on one device."""
    mesh = Mesh(np.array(jax.devices()), ("data",))
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 5)) * 3.0 + jnp.arange(5.0)
    synced = nn.BatchNorm(use_running_average=False, momentum=0.5, axis_name="data")
    local = nn.BatchNorm(use_running_average=False, momentum=0.5)
    variables = local.init(jax.random.PRNGKey(1), x)

    def run(module: nn.Module):
        def per_device(v, xs):
            return module.apply(v, xs, mutable=["batch_stats"])

        return jax.jit(
            jax.shard_map(
                per_device,
                mesh=mesh,
                in_specs=(PartitionSpec(), PartitionSpec("data")),
                out_specs=(PartitionSpec("data"), PartitionSpec()),
                check_vma=False,
            )
        )(variables, x)

    y_synced, stats_synced = run(synced)
    y_local, stats_local = run(local)
    y_full, stats_full = local.apply(variables, x, mutable=["batch_stats"])
    mean = lambda s: np.asarray(s["batch_stats"]["mean"]).tolist()  # noqa: E731
    var = lambda s: np.asarray(s["batch_stats"]["var"]).tolist()  # noqa: E731
    return {
        "devices": len(mesh.devices.flat),
        "mean_synced": mean(stats_synced),
        "mean_full": mean(stats_full),
        "mean_local": mean(stats_local),
        "var_synced": var(stats_synced),
        "var_full": var(stats_full),
        "y_max_diff_synced": float(jnp.max(jnp.abs(y_synced - y_full))),
        "y_max_diff_local": float(jnp.max(jnp.abs(y_local - y_full))),
    }


def main() -> None:
    """Train on one device, a data mesh and a data x model mesh; report everything."""
    devices = np.array(jax.devices())
    meshes = {
        "one": Mesh(devices[:1].reshape(1, 1), ("data", "model")),
        "data8": Mesh(devices, ("data",)),
        "data2_model4": Mesh(devices.reshape(2, 4), ("data", "model")),
    }
    specs = logical_specs()
    result: dict = {"device_count": len(devices), "runs": {}}
    for name, mesh in meshes.items():
        losses, params = train(mesh, steps=10)
        result["runs"][name] = {
            "losses": losses,
            "params": sharding_report(params, mesh, specs),
        }
    result["batchnorm"] = batchnorm_under_shard_map()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
