"""Two real JAX processes (jax.distributed, gloo on CPU, 4 simulated devices each)
train examples/sharded_train.py's model on one global 2x4 mesh, save it through
Orbax with each process writing only its own shards, and, started again, resume
from the latest step; the losses are those of one device throughout.

Each run starts both processes of tests/multihost_worker.py on a port free at
run time and waits for both without a deadline (pytest-timeout is the hang guard);
if one fails, or the test ends for any reason, whatever is left is killed, so nothing
stays running when a test fails.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("multihost_worker.py")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_pair(workdir: Path, name: str, steps: int, *extra: str) -> list[dict]:
    """Both processes of one run; their JSON reports, ordered by process id."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    port, ckpt = _free_port(), workdir / "ckpt"
    procs, logs = [], []
    try:
        for i in range(2):
            # Files, not pipes: a process blocked on a full pipe would stall the other one.
            out, err = open(workdir / f"{name}{i}.out", "w"), open(workdir / f"{name}{i}.err", "w")
            logs.append((out, err))
            cmd = [sys.executable, str(WORKER), str(i), str(port), str(ckpt), str(steps), *extra]
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=WORKER.parent))

        # No deadline (pytest-timeout alone guards against hangs): a run takes what it
        # takes. A process that fails leaves its peer waiting in jax.distributed, so the
        # wait ends as soon as one fails, and `finally` stops the other.
        def waiting() -> bool:  # some process still runs and none has failed
            codes = [p.poll() for p in procs]
            return None in codes and all(c in (None, 0) for c in codes)

        while waiting():
            try:
                next(p for p in procs if p.returncode is None).wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass  # only a poll interval: check the other process too
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for out, err in logs:
            out.close()
            err.close()
    reports = []
    for i, p in enumerate(procs):
        err = (workdir / f"{name}{i}.err").read_text()[-3000:]
        assert p.returncode == 0, f"process {i} of {name} failed:\n{err}"
        lines = (workdir / f"{name}{i}.out").read_text().splitlines()
        reports.append(json.loads([line for line in lines if line.startswith("{")][-1]))
    return reports


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Train steps 0-3 (saving at 2 and 4), then restart both processes for steps 4-5."""
    workdir = tmp_path_factory.mktemp("multihost")
    first = _run_pair(workdir, "train", 4)
    steps_after_first = sorted(int(p.name) for p in (workdir / "ckpt").iterdir())
    second = _run_pair(workdir, "resume", 6, "--resume")
    return {"first": first, "second": second, "dir": workdir / "ckpt", "saved": steps_after_first}


def test_two_processes_form_one_mesh_of_eight_devices(runs):
    for run in ("first", "second"):
        reports = runs[run]
        assert [r["process_index"] for r in reports] == [0, 1]
        for r in reports:
            assert (r["process_count"], r["devices"], r["local_devices"]) == (2, 8, 4)
        # The data axis spans the processes: each feeds its own half of the batch of 16.
        assert [r["rows_fed"] for r in reports] == [[0, 8], [8, 16]]


def test_losses_match_one_device_before_and_after_restart(runs):
    first, second = runs["first"], runs["second"]
    for r in first:
        assert r["start"] == 0 and len(r["losses"]) == 4
        np.testing.assert_allclose(r["losses"], r["reference"], rtol=0, atol=1e-5)
    # Restarted, both processes go on from the latest checkpoint (step 4).
    for r in second:
        assert r["start"] == 4 and len(r["losses"]) == 2
        np.testing.assert_allclose(r["losses"], r["reference"], rtol=0, atol=1e-5)
    assert second[0]["losses"][-1] < first[0]["losses"][0] - 0.5  # it really trains on


def test_every_process_holds_only_its_own_shards(runs):
    for run in ("first", "second"):
        p0, p1 = (r["params"] for r in runs[run])
        assert p0.keys() == p1.keys() and len(p0) > 10
        for path, info in p0.items():
            assert info["mesh_devices"] == 8, path
            assert not info["fully_addressable"], path
            assert info["local_devices"] == [0, 0, 0, 0], path
            assert p1[path]["local_devices"] == [1, 1, 1, 1], path
            assert info["sum"] == p1[path]["sum"], path  # one global array, seen by both
        kernel = p0["blocks/up/kernel"]
        assert kernel["spec"] == "P(None, None, 'model')"
        assert kernel["shape"] == [2, 32, 64] and kernel["shard"] == [2, 32, 16]


def test_each_process_writes_its_part_of_each_checkpoint(runs):
    assert runs["saved"] == [2, 4]
    # max_to_keep=2: the restart saved step 6 and dropped step 2.
    assert sorted(int(p.name) for p in runs["dir"].iterdir()) == [4, 6]
    for step in (4, 6):
        item = runs["dir"] / str(step) / "default"
        for i in range(2):
            assert any((item / f"ocdbt.process_{i}" / "d").iterdir()), (step, i)
            written = json.loads((item / "array_metadatas" / f"process_{i}").read_text())
            shapes = {
                m["array_metadata"]["param_name"]: m["array_metadata"]["write_shape"]
                for m in written["array_metadatas"]
            }
            # A (2, 32, 16) shard of blocks/up/kernel lives on both processes (the
            # data axis replicates it); each process writes its own half of it.
            assert math.prod(shapes["params.blocks.up.kernel"]) * 2 == 2 * 32 * 16
