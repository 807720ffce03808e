"""BatchNorm training semantics (seed 003's MLP under vmap) and normalization errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from golden import seed003_cells
from golden.tree_record import describe, flatten, load

import minilinen as nn
from minilinen.errors import LayerConfigError, MergeParamError

GOLDEN = Path(__file__).parent / "golden" / "layers"
NAME = "seed003_batchnorm_vmap"


def golden(partitionable: bool) -> tuple[dict, dict]:
    """Flax's recorded structure and arrays of the seed's BatchNorm MLP training."""
    structures, arrays = load(GOLDEN, partitionable)
    return structures[NAME], {k: v for k, v in arrays.items() if k.startswith(f"{NAME}/")}


def test_seed003_batchnorm_mlp_trains_like_flax(partitionable):
    structure, arrays = golden(partitionable)
    result = seed003_cells.batchnorm_vmap_training(nn, seed003_cells.make_data())

    assert describe(result, NAME) == structure
    for path, value in flatten(result, NAME).items():
        want = arrays[path]
        np.testing.assert_allclose(
            value, want, rtol=1e-6, atol=1e-6 * np.abs(want).max(), err_msg=path
        )
    losses = [float(v) for v in result["losses"]]
    assert losses[-1] < losses[0], "the MLP did not train"


class MLP(nn.Module):
    """Seed 003's MLP: Dense -> BatchNorm(axis_name='batch') -> relu, twice, then Dense."""

    hidden: int = 4

    @nn.compact
    def __call__(self, x, train=False):
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, axis_name="batch")
        x = nn.relu(norm()(nn.Dense(self.hidden)(x)))
        x = nn.relu(norm()(nn.Dense(self.hidden)(x)))
        return nn.Dense(1)(x)


@pytest.fixture(scope="module")
def mlp():
    x = jnp.asarray(np.random.RandomState(0).standard_normal((6, 3)), jnp.float32)
    variables = MLP().init(jax.random.key(0), x)
    return x, variables


@partial(jax.jit, static_argnames="train")
def vmapped_apply(variables, x, train):
    def one(xi):
        return MLP().apply(variables, xi, train=train, mutable=["batch_stats"])

    return jax.vmap(one, out_axes=(0, None), axis_name="batch")(x)


def test_train_mode_updates_batch_stats_with_batch_moments(mlp):
    x, variables = mlp
    stats = variables["batch_stats"]["BatchNorm_0"]
    assert np.array_equal(stats["mean"], np.zeros(4)) and np.array_equal(stats["var"], np.ones(4))

    _, updated = vmapped_apply(variables, x, True)
    new = updated["batch_stats"]["BatchNorm_0"]
    # The first BatchNorm sees Dense_0's output over the whole (vmapped) batch.
    p = variables["params"]["Dense_0"]
    h = np.asarray(x) @ np.asarray(p["kernel"]) + np.asarray(p["bias"])
    np.testing.assert_allclose(new["mean"], 0.1 * h.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * h.var(0), rtol=1e-5, atol=1e-6)
    second = updated["batch_stats"]["BatchNorm_1"]
    assert not np.array_equal(second["mean"], variables["batch_stats"]["BatchNorm_1"]["mean"])


def test_eval_mode_leaves_batch_stats_untouched(mlp):
    x, variables = mlp
    _, trained = vmapped_apply(variables, x, True)
    variables = {"params": variables["params"], "batch_stats": trained["batch_stats"]}

    y, after = vmapped_apply(variables, x, False)
    for a, b in zip(jax.tree.leaves(after["batch_stats"]), jax.tree.leaves(trained["batch_stats"])):
        assert np.array_equal(a, b)
    # Without vmap, eval mode needs no axis name and gives the same outputs.
    y_plain = MLP().apply(variables, x)
    np.testing.assert_allclose(y, y_plain, rtol=1e-5, atol=1e-6)


def test_vmapped_statistics_equal_whole_batch_statistics():
    x = jnp.asarray(np.random.RandomState(1).standard_normal((5, 3)) * 2 + 1, jnp.float32)
    bn_axis = nn.BatchNorm(use_running_average=False, axis_name="batch")
    bn = nn.BatchNorm(use_running_average=False)
    variables = bn.init(jax.random.key(0), x)

    y_map, s_map = jax.vmap(
        lambda xi: bn_axis.apply(variables, xi, mutable=["batch_stats"]),
        out_axes=(0, None),
        axis_name="batch",
    )(x)
    y, s = bn.apply(variables, x, mutable=["batch_stats"])
    np.testing.assert_allclose(y_map, y, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(s_map), jax.tree.leaves(s)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_use_running_average_must_be_given_exactly_once():
    x = jnp.ones((2, 3))
    with pytest.raises(MergeParamError, match="use_running_average"):
        nn.BatchNorm().init(jax.random.key(0), x)
    with pytest.raises(MergeParamError, match="constructor and at call time"):
        nn.BatchNorm(use_running_average=True).init(jax.random.key(0), x, True)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (nn.GroupNorm(num_groups=4), "does not divide"),
        (nn.GroupNorm(num_groups=None, group_size=4), "not a multiple"),
        (nn.GroupNorm(num_groups=2, group_size=3), "exactly one"),
        (nn.GroupNorm(num_groups=3, reduction_axes=(1,)), "last axis"),
        (nn.InstanceNorm(feature_axes=(0, -1)), "batch axis"),
    ],
)
def test_bad_normalization_configs_raise_named_errors(module, match):
    with pytest.raises(LayerConfigError, match=match) as info:
        module.init(jax.random.key(0), jnp.ones((2, 3, 6)))
    assert isinstance(info.value, ValueError)


def test_normalization_keeps_input_dtype_and_computes_in_float32():
    x = jnp.asarray(np.random.RandomState(2).standard_normal((3, 8)) * 50, jnp.bfloat16)
    ln = nn.LayerNorm(param_dtype=jnp.bfloat16)
    y = ln.apply(ln.init(jax.random.key(0), x), x)
    assert y.dtype == jnp.bfloat16
    xf = np.asarray(x, np.float32)
    want = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(np.asarray(y, np.float32), want, rtol=2e-2, atol=2e-2)


DEVICES_SCRIPT = """
import json
import os
import subprocess
import sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
import minilinen as nn

x = jnp.arange(8.0).reshape(4, 2) ** 1.5
out = {}
bn = nn.BatchNorm(
    use_running_average=False, momentum=0.0, axis_name="b", axis_index_groups=[[0, 1], [2, 3]]
)
v = bn.init(jax.random.key(0), x[:1])
_, s = jax.pmap(lambda xi: bn.apply(v, xi[None], mutable=["batch_stats"]), axis_name="b")(x)
out["pmap_groups_mean"] = np.asarray(s["batch_stats"]["mean"]).tolist()

mesh = Mesh(np.array(jax.devices()), ("b",))
sharded = nn.BatchNorm(use_running_average=False, axis_name="b")
f = jax.shard_map(
    lambda xs: sharded.apply(v, xs, mutable=["batch_stats"]),
    mesh=mesh, in_specs=P("b"), out_specs=(P("b"), P()),
)
y, s = f(x)
y_whole, s_whole = nn.BatchNorm(use_running_average=False).apply(v, x, mutable=["batch_stats"])
out["shard_map_y_err"] = float(jnp.abs(y - y_whole).max())
out["shard_map_mean_err"] = float(
    jnp.abs(s["batch_stats"]["mean"] - s_whole["batch_stats"]["mean"]).max()
)
print(json.dumps(out))
"""


def test_batch_stats_average_across_devices_with_pmap_groups_and_shard_map():
    # The device count is fixed when JAX starts, so four CPU devices need a fresh process.
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    run = subprocess.run(
        [sys.executable, "-c", DEVICES_SCRIPT], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    xs = np.arange(8.0).reshape(4, 2) ** 1.5
    group = [xs[:2].mean(0), xs[:2].mean(0), xs[2:].mean(0), xs[2:].mean(0)]
    np.testing.assert_allclose(out["pmap_groups_mean"], group, rtol=1e-6)
    assert out["shard_map_y_err"] < 1e-5 and out["shard_map_mean_err"] < 1e-6


def test_weight_norm_names_scales_by_the_full_path_of_boxed_kernels():
    # Flax names the scale by the variable's key path, box fields included ('value').
    dense = nn.Dense(
        4, kernel_init=nn.with_partitioning(jax.nn.initializers.lecun_normal(), ("x",))
    )
    variables = nn.WeightNorm(dense).init(jax.random.key(0), jnp.ones((2, 3)))
    assert set(variables["params"]) == {"layer_instance", "layer_instance/kernel/value/scale"}
    assert variables["params"]["layer_instance/kernel/value/scale"].shape == (4,)
