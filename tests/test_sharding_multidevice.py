"""Training on 8 simulated CPU devices gives one device's losses, with parameters
sharded as their partition specs say, and BatchNorm syncing its statistics.

JAX fixes its device count at startup, and pytest has imported it already, so
``sharding_worker.py`` runs in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` and reports JSON. It trains
``examples/sharded_train.py``'s transformer for 10 steps on one device, on a
``('data',)`` mesh of 8 and on a 2x4 ``('data', 'model')`` mesh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("sharding_worker.py")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report() -> dict:
    """The worker's results (one run for every test in this file)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    # No timeout of its own: how long it takes is no verdict (the suite's guard catches a hang).
    done = subprocess.run([sys.executable, str(WORKER)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_eight_simulated_devices(report):
    assert report["device_count"] == 8


@pytest.mark.parametrize("mesh", ["data8", "data2_model4"])
def test_losses_match_one_device_for_10_steps(report, mesh):
    single = report["runs"]["one"]["losses"]
    sharded = report["runs"][mesh]["losses"]
    assert len(single) == len(sharded) == 10
    np.testing.assert_allclose(sharded, single, rtol=0, atol=1e-5)
    assert sharded[-1] < sharded[0] - 1.0  # it is really training


@pytest.mark.parametrize("mesh", ["data8", "data2_model4"])
def test_params_are_sharded_as_their_specs_say(report, mesh):
    params = report["runs"][mesh]["params"]
    for path, p in params.items():
        assert p["equivalent"], f"{path}: wanted {p['wanted']}, has {p['actual']}"
        assert p["devices"] == 8, path
    if mesh == "data2_model4":
        # Tensor parallel: the 'model' axis (4 devices) splits heads, hidden units
        # and the vocabulary; each device holds a quarter of those dimensions.
        up = params["blocks/up/kernel"]
        assert up["shape"] == [2, 32, 64] and up["shard"] == [2, 32, 16]
        assert params["blocks/down/kernel"]["shard"] == [2, 16, 32]
        assert params["blocks/query/kernel"]["shard"] == [2, 32, 8]
        assert params["Embed_0/embedding"]["shard"] == [8, 32]
        assert params["blocks/LayerNorm_0/scale"]["shard"] == [2, 32]  # replicated
    else:
        assert all(p["shard"] == p["shape"] for p in params.values())  # data parallel only


def test_batchnorm_statistics_are_averaged_across_devices_under_shard_map(report):
    bn = report["batchnorm"]
    assert bn["devices"] == 8
    np.testing.assert_allclose(bn["mean_synced"], bn["mean_full"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn["var_synced"], bn["var_full"], rtol=1e-5, atol=1e-6)
    assert bn["y_max_diff_synced"] < 1e-5
    # Without axis_name each device normalizes by its own shard's statistics.
    assert not np.allclose(bn["mean_local"], bn["mean_full"], atol=1e-2)
    assert bn["y_max_diff_local"] > 1e-2
