"""install_as_flax(): every Flax import path a linen user writes resolves to minilinen.

Each scenario runs in a fresh interpreter, so this test process never has a
``flax`` finder installed (nor the real Flax imported).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

L = "minilinen.layers."
# The contract (README's table): flax path -> minilinen modules serving it, first hit wins.
EXPECTED = {
    "flax": [],
    "flax.linen": ["minilinen"],
    "flax.linen.activation": [L + "activation"],
    "flax.linen.attention": [L + "attention"],
    "flax.linen.batch_apply": [L + "batch_apply"],
    "flax.linen.combinators": [L + "combinators"],
    "flax.linen.dtypes": [L + "common"],
    "flax.typing": ["minilinen.typing"],
    "flax.linen.fp8_ops": [L + "fp8_ops"],
    "flax.linen.initializers": ["minilinen.initializers"],
    "flax.linen.linear": [L + "linear", L + "conv"],
    "flax.linen.module": ["minilinen.module"],
    "flax.linen.normalization": [L + "normalization"],
    "flax.linen.partitioning": ["minilinen.partitioning"],
    "flax.linen.pooling": [L + "pooling"],
    "flax.linen.recurrent": [L + "recurrent", "minilinen.transforms.rnn"],
    "flax.linen.spmd": ["minilinen.spmd"],
    "flax.linen.stochastic": [L + "stochastic"],
    "flax.linen.summary": ["minilinen.summary"],
    "flax.linen.transforms": ["minilinen.transforms"],
    "flax.core": ["minilinen.core", "minilinen.core.meta", "minilinen.core.scope"],
    "flax.core.frozen_dict": ["minilinen.core.frozen_dict"],
    "flax.core.meta": ["minilinen.core.meta"],
    "flax.core.scope": ["minilinen.core.scope"],
    "flax.struct": ["minilinen.struct"],
    "flax.serialization": ["minilinen.serialization"],
    "flax.traverse_util": ["minilinen.traverse_util"],
    "flax.errors": ["minilinen.errors"],
    "flax.jax_utils": ["minilinen.jax_utils"],
    "flax.training": ["minilinen.training"],
    "flax.training.train_state": ["minilinen.training.train_state"],
    "flax.training.checkpoints": ["minilinen.training.checkpoints"],
    "flax.training.common_utils": ["minilinen.training.common_utils"],
    "flax.training.dynamic_scale": ["minilinen.training.dynamic_scale"],
    "flax.training.early_stopping": ["minilinen.training.early_stopping"],
}

# Imports every path and reports, per path, which public names it failed to serve as the
# very object of the first minilinen module holding them.
PATHS_SCRIPT = """
import importlib, importlib.util, json, sys
import minilinen
from minilinen import errors
minilinen.install_as_flax()
report = {}
for path, targets in json.loads(sys.argv[1]).items():
    existing = [importlib.import_module(t) for t in targets if importlib.util.find_spec(t)]
    entry = report[path] = {"exists": bool(existing) or not targets}
    try:
        proxy = importlib.import_module(path)
    except errors.NotInMinilinenImportError as e:
        entry["error"] = str(e)
        continue
    names = {n for m in existing for n in dir(m) if not n.startswith("_")}
    names -= {p.rpartition(".")[2] for p in json.loads(sys.argv[1]) if p.startswith(path + ".")}
    want = {n: next(getattr(m, n) for m in existing if hasattr(m, n)) for n in names}
    entry["served"] = len(names)
    entry["wrong"] = sorted(n for n in names if getattr(proxy, n) is not want[n])
print(json.dumps(report))
"""


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


def run_ok(script: str, *args: str) -> str:
    done = run(script, *args)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def paths_report():
    return json.loads(run_ok(PATHS_SCRIPT, json.dumps(EXPECTED)).strip().splitlines()[-1])


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_each_flax_path_serves_its_minilinen_modules(paths_report, path):
    entry = paths_report[path]
    if not entry["exists"]:  # a module another part of the work has not added yet
        assert "is not in minilinen" in entry["error"]
        return
    assert "error" not in entry, entry.get("error")
    assert entry["wrong"] == []
    if EXPECTED[path]:
        assert entry["served"] > 0


def test_user_code_sees_minilinen_objects_and_plain_dicts():
    out = run_ok("""
        import minilinen, jax, jax.numpy as jnp
        minilinen.install_as_flax()
        import flax
        from flax import linen as nn
        from flax import config, serialization, struct, traverse_util
        from flax.core import FrozenDict, freeze
        from flax.training import train_state
        import flax.linen.linear
        assert nn.Dense is minilinen.Dense and flax.linen is nn
        assert flax.linen.linear.Conv is minilinen.Conv and FrozenDict is minilinen.FrozenDict
        assert train_state.TrainState is minilinen.training.train_state.TrainState
        assert config is minilinen.config and config.flax_return_frozendict is False
        from flax.typing import In, PRNGKey  # Flax's annotations, and scan's in-only marker
        assert In is flax.linen.partitioning.ScanIn and PRNGKey is not None
        model = nn.Dense(2)
        x = jnp.ones((1, 3))
        variables = model.init(jax.random.key(0), x)
        assert type(variables) is dict and type(variables["params"]) is dict
        variables["params"]["bias"] = jnp.full((2,), 5.0)  # Flax 0.12 code assigns into them
        y = model.apply(variables, x)
        assert abs(float(y[0, 0] - (x @ variables["params"]["kernel"])[0, 0]) - 5.0) < 1e-5
        config.update("flax_return_frozendict", True)
        assert type(model.init(jax.random.key(0), x)) is FrozenDict
        minilinen.install_as_flax()  # a second call changes nothing, the flag stays
        assert config.flax_return_frozendict is True
        print("ok")
    """)
    assert out.strip() == "ok"


MISSING_SCRIPT = """
import minilinen
from minilinen import errors
minilinen.install_as_flax()
from flax import linen as nn
cases = {
    "from": "from flax.linen import NoSuchLayer",
    "attr": "nn.NoSuchLayer",
    "path": "import flax.linen.kw_only_dataclasses",
    "top": "import flax.cursor",
    "nnx": "import flax.nnx",
    "from_nnx": "from flax import nnx",
    "nnx_sub": "import flax.nnx.graph",
}
for case, code in cases.items():
    try:
        exec(code)
    except Exception as e:
        print(case, type(e).__name__, "|", e)
print("getattr", getattr(nn, "NoSuchLayer", "default"), hasattr(nn, "Dense"))
"""


def test_missing_names_and_paths_say_they_are_not_in_minilinen():
    lines = dict(line.split(" ", 1) for line in run_ok(MISSING_SCRIPT).strip().splitlines())
    assert lines["from"].startswith("NotInMinilinenImportError |")
    assert "flax.linen.NoSuchLayer is not in minilinen" in lines["from"]
    assert lines["attr"].startswith("NotInMinilinenError |")  # an AttributeError
    assert "flax.linen.NoSuchLayer is not in minilinen" in lines["attr"]
    assert lines["path"].startswith("NotInMinilinenImportError |")
    assert lines["top"].startswith("NotInMinilinenImportError | flax.cursor is not")
    for case in ("nnx", "from_nnx", "nnx_sub"):
        assert lines[case].startswith("NNXOutOfScopeError |")
        assert "NNX is out of scope" in lines[case]
    assert lines["getattr"] == "default True"


def test_error_classes_subclass_what_python_expects():
    from minilinen import errors

    assert issubclass(errors.NotInMinilinenError, AttributeError)
    assert issubclass(errors.NotInMinilinenImportError, ModuleNotFoundError)
    assert issubclass(errors.NNXOutOfScopeError, ImportError)
    assert issubclass(errors.RealFlaxImportedError, ImportError)
    for cls in (errors.NotInMinilinenError, errors.NotInMinilinenImportError):
        assert issubclass(cls, errors.MinilinenError)


def test_refuses_when_the_real_flax_is_already_imported():
    out = run_ok("""
        import sys, types
        sys.modules["flax"] = types.ModuleType("flax")  # what `import flax` leaves behind
        import minilinen
        from minilinen import errors
        try:
            minilinen.install_as_flax()
        except errors.RealFlaxImportedError as e:
            print(type(e).__name__, "|", e)
        assert not any(type(f).__name__ == "_FlaxFinder" for f in sys.meta_path)
    """)
    assert out.startswith("RealFlaxImportedError | The real Flax is already imported (flax)")
    assert "before anything imports flax" in out


def test_this_process_has_no_flax_finder():
    assert not any(type(f).__name__ == "_FlaxFinder" for f in sys.meta_path)
