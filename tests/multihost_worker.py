"""One of two processes of a multi-host run, started by tests/test_multihost_orbax.py.

    multihost_worker.py PROCESS_ID PORT CHECKPOINT_DIR STEPS [--resume]

It simulates 4 CPU devices, joins the other process through
``jax.distributed`` (coordinator 127.0.0.1:PORT, gloo collectives), and runs
``examples/sharded_train.py``'s own ``main`` on the global 2x4 mesh: training,
saving through Orbax every 2 steps, or resuming from the latest step. It prints
one JSON line: what this process sees of the mesh, its losses and those of one
device, and where every parameter it ends with lives.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "examples")]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import sharded_train  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from minilinen.traverse_util import flatten_dict  # noqa: E402


def main() -> None:
    process_id, port, directory, steps = sys.argv[1:5]
    argv = ["--num-processes", "2", "--process-id", process_id]
    argv += ["--coordinator", f"127.0.0.1:{port}", "--checkpoint-dir", directory]
    argv += ["--steps", steps, "--save-every", "2"] + sys.argv[5:]
    result = sharded_train.main(argv)
    params = {}
    for path, value in flatten_dict(result["params"]).items():
        shards = value.addressable_shards
        params["/".join(path)] = {
            "spec": str(value.sharding.spec),
            "mesh_devices": len(value.sharding.device_set),
            "fully_addressable": value.is_fully_addressable,
            "local_devices": sorted(s.device.process_index for s in shards),
            "shard": list(shards[0].data.shape),
            "shape": list(value.shape),
            # A global reduction: every process gets the sum over all shards.
            "sum": float(jax.jit(jnp.sum)(value)),
        }
    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    rows = sharded_train.local_rows(NamedSharding(mesh, PartitionSpec("data")), (16, 9))
    report = {
        "rows_fed": [rows.start, rows.stop],
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "start": result["start"],
        "losses": result["losses"],
        "reference": result["reference"],
        "params": params,
    }
    print(json.dumps(report), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
