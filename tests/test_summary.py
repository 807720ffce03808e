"""``nn.tabulate`` / ``Module.tabulate`` on the seeds' models, against hand-counted totals.

Every expected count below is worked out by hand from the layer shapes (a Dense
from m to n features holds m*n + n values), never read back from the table. At the
end, the cases of ``golden/summary_cases.py`` must draw the very text the real Flax
drew for them (``golden/make_golden_summary.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from golden.summary_cases import CASES, CONSOLES, render
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax, random

import minilinen as nn
from minilinen.summary import _dump, tabulate

GOLDEN = Path(__file__).parent / "golden" / "summary" / "tables.json"

PLAIN = {"force_terminal": False}  # no ANSI styles: the text is parsed below
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- the seeds' models (seed 004, and seed 003's BatchNorm MLP) -----------------


class ExplicitMLP(nn.Module):
    features: Sequence[int]

    def setup(self):
        self.layers = [nn.Dense(feat) for feat in self.features]

    def __call__(self, inputs):
        x = inputs
        for i, lyr in enumerate(self.layers):
            x = lyr(x)
            if i != len(self.layers) - 1:
                x = nn.relu(x)
        return x


class SimpleMLP(nn.Module):
    features: Sequence[int]

    @nn.compact
    def __call__(self, inputs):
        x = inputs
        for i, feat in enumerate(self.features):
            x = nn.Dense(feat, name=f"layers_{i}")(x)
            if i != len(self.features) - 1:
                x = nn.relu(x)
        return x


class SimpleDense(nn.Module):
    features: int

    @nn.compact
    def __call__(self, inputs):
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (inputs.shape[-1], self.features)
        )
        y = lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return y + bias


class BiasAdderWithRunningMean(nn.Module):
    decay: float = 0.99

    @nn.compact
    def __call__(self, x):
        is_initialized = self.has_variable("batch_stats", "mean")
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s), x.shape[1:])
        bias = self.param("bias", lambda rng, shape: jnp.zeros(shape), x.shape[1:])
        if is_initialized:
            ra_mean.value = self.decay * ra_mean.value + (1.0 - self.decay) * jnp.mean(
                x, axis=0, keepdims=True
            )
        return x - ra_mean.value + bias


class MLP(nn.Module):
    hidden_size: int
    out_size: int

    @nn.compact
    def __call__(self, x, train=False):
        norm = partial(
            nn.BatchNorm,
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            axis_name="batch",
        )
        x = nn.relu(norm()(nn.Dense(self.hidden_size)(x)))
        x = nn.relu(norm()(nn.Dense(self.hidden_size)(x)))
        return nn.Dense(self.out_size)(x)


# --- reading the table back -----------------------------------------------------


def rows(text: str) -> list[dict[str, str]]:
    """The table's body and footer rows as {column: cell text (lines joined by ' | ')}."""
    lines = [ANSI.sub("", line) for line in text.splitlines()]
    header = next(line for line in lines if line.startswith("┃"))
    names = [c.strip() for c in header.strip("┃").split("┃")]
    out, current = [], None
    for line in lines:
        if line.startswith(("┡", "├", "└")):
            if current is not None:
                out.append({k: " | ".join(v for v in vs if v) for k, vs in current.items()})
            current = {name: [] for name in names}
        elif line.startswith("│") and current is not None:
            for name, cell in zip(names, line.strip("│").split("│")):
                current[name].append(cell.strip())
    return out


def total_line(text: str) -> str:
    return next(ANSI.sub("", line).strip() for line in text.splitlines() if "Total Para" in line)


def by_path(table: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["path"]: row for row in table[:-1]}


KEY = random.PRNGKey(0)


# --- hand-counted models ----------------------------------------------------------


def test_dense_from_seed_004():
    # kernel 10x5 + bias 5 = 55 float32 values = 220 bytes.
    text = nn.Dense(features=5).tabulate(KEY, jnp.ones((10,)), console_kwargs=PLAIN)
    table = rows(text)
    assert len(table) == 2  # the Dense row, then the totals
    row, footer = table
    assert (row["path"], row["module"]) == ("", "Dense")
    assert row["inputs"] == "float32[10]" and row["outputs"] == "float32[5]"
    assert row["params"] == "bias: float32[5] | kernel: float32[10,5] | 55 (220 B)"
    assert footer["outputs"] == "Total" and footer["params"] == "55 (220 B)"
    assert total_line(text) == "Total Parameters: 55 (220 B)"
    assert "Dense Summary" in text


@pytest.mark.parametrize("cls", [ExplicitMLP, SimpleMLP], ids=["setup", "compact"])
def test_mlps_from_seed_004(cls):
    # Dense 4->3: 12+3 = 15; 3->4: 12+4 = 16; 4->5: 20+5 = 25; total 56 = 224 bytes.
    text = cls(features=[3, 4, 5]).tabulate(KEY, jnp.ones((4, 4)), console_kwargs=PLAIN)
    table = rows(text)
    assert [r["path"] for r in table] == ["", "layers_0", "layers_1", "layers_2", ""]
    paths = by_path(table)
    assert paths[""]["module"] == cls.__name__ and paths[""]["params"] == ""
    assert paths["layers_0"]["params"].endswith("15 (60 B)")
    assert paths["layers_1"]["params"].endswith("16 (64 B)")
    assert paths["layers_2"]["params"].endswith("25 (100 B)")
    assert paths["layers_1"]["inputs"] == "float32[4,3]"
    assert paths["layers_1"]["outputs"] == "float32[4,4]"
    assert paths["layers_2"]["outputs"] == "float32[4,5]"
    assert table[-1]["params"] == "56 (224 B)"
    assert total_line(text) == "Total Parameters: 56 (224 B)"


def test_simple_dense_from_seed_004():
    # The hand-written dense layer: kernel 4x3 + bias 3 = 15 values.
    text = SimpleDense(features=3).tabulate(KEY, jnp.ones((4, 4)), console_kwargs=PLAIN)
    row = rows(text)[0]
    # Variables are listed by name (as Flax lists them), not in creation order.
    assert row["params"] == "bias: float32[3] | kernel: float32[4,3] | 15 (60 B)"
    assert total_line(text) == "Total Parameters: 15 (60 B)"


def test_state_collections_get_their_own_column():
    # Seed 004's running-mean layer: 5 params and 5 batch_stats, 20 bytes each.
    text = BiasAdderWithRunningMean().tabulate(KEY, jnp.ones((10, 5)), console_kwargs=PLAIN)
    (row, footer) = rows(text)
    assert row["params"] == "bias: float32[5] | 5 (20 B)"
    assert row["batch_stats"] == "mean: float32[5] | 5 (20 B)"
    assert (footer["params"], footer["batch_stats"]) == ("5 (20 B)", "5 (20 B)")
    assert total_line(text) == "Total Parameters: 10 (40 B)"


def test_batchnorm_mlp_from_seed_003():
    # Dense 5->10: 60; BatchNorm(10): scale+bias 20 params, mean+var 20 stats;
    # Dense 10->10: 110; BatchNorm: 20 + 20; Dense 10->1: 11.
    # params 60+20+110+20+11 = 221 (884 B); batch_stats 40 (160 B); all 261 (1,044 B).
    text = tabulate(MLP(hidden_size=10, out_size=1), KEY, console_kwargs=PLAIN)(jnp.ones((32, 5)))
    table = rows(text)
    assert [r["path"] for r in table[:-1]] == [
        "",
        "Dense_0",
        "BatchNorm_0",
        "Dense_1",
        "BatchNorm_1",
        "Dense_2",
    ]
    paths = by_path(table)
    assert paths["BatchNorm_0"]["params"] == "bias: float32[10] | scale: float32[10] | 20 (80 B)"
    assert paths["BatchNorm_0"]["batch_stats"] == "mean: float32[10] | var: float32[10] | 20 (80 B)"
    assert paths["Dense_1"]["params"].endswith("110 (440 B)")
    assert paths["Dense_2"]["params"].endswith("11 (44 B)")
    assert paths["Dense_0"]["batch_stats"] == ""
    assert (table[-1]["params"], table[-1]["batch_stats"]) == ("221 (884 B)", "40 (160 B)")
    assert total_line(text) == "Total Parameters: 261 (1.0 KB)"


# --- depth, repeated calls, inputs ------------------------------------------------


class Block(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(4)(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dropout(0.5, deterministic=not train)(x)


class Net(nn.Module):
    def setup(self):
        self.block = Block()
        self.head = nn.Dense(2)

    def encode(self, x, train=False):
        return self.block(x, train)

    def __call__(self, x, train=False):
        h = self.head(self.encode(x, train=train))
        return self.head(jnp.concatenate([h, h], axis=-1))  # the head, called twice


RNGS = {"params": random.PRNGKey(0), "dropout": random.PRNGKey(1)}


def test_nested_modules_and_keyword_inputs():
    # block/Dense_0 2->4: 12; block/BatchNorm_0: 8 params + 8 stats; head 4->2: 10.
    text = Net().tabulate(RNGS, jnp.ones((3, 2)), train=True, console_kwargs=PLAIN)
    table = rows(text)
    assert [r["path"] for r in table[:-1]] == [
        "",
        "block",
        "block/Dense_0",
        "block/BatchNorm_0",
        "block/Dropout_0",
        "head",
    ]
    paths = by_path(table)
    assert paths[""]["inputs"] == "- float32[3,2] | - train: True"
    assert paths["block"]["inputs"] == "- float32[3,2] | - True"
    assert paths["block/Dropout_0"]["params"] == ""
    assert paths["head"]["params"].endswith("10 (40 B)")
    assert (table[-1]["params"], table[-1]["batch_stats"]) == ("30 (120 B)", "8 (32 B)")
    assert total_line(text) == "Total Parameters: 38 (152 B)"


def test_depth_folds_submodules_into_their_ancestor():
    text = Net().tabulate(RNGS, jnp.ones((3, 2)), depth=1, console_kwargs=PLAIN)
    table = rows(text)
    assert [r["path"] for r in table[:-1]] == ["", "block", "head"]
    block = by_path(table)["block"]
    assert (block["params"], block["batch_stats"]) == ("20 (80 B)", "8 (32 B)")  # 12 + 8
    assert by_path(table)["head"]["params"].startswith("bias: float32[2]")
    root = rows(Net().tabulate(RNGS, jnp.ones((3, 2)), depth=0, console_kwargs=PLAIN))
    assert [r["path"] for r in root] == ["", ""]
    assert root[0]["params"] == "30 (120 B)"


def test_a_folded_row_lists_its_own_variables_and_counts_its_subtree():
    class Scaled(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(x) * self.param("scale", nn.initializers.ones, (3,))

    class Top(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Scaled()(x)

    (_, scaled, _) = rows(Top().tabulate(KEY, jnp.ones((1, 2)), depth=1, console_kwargs=PLAIN))
    # Its own scale (3) is listed; the count adds its folded Dense 2->3 (9).
    assert scaled["params"] == "scale: float32[3] | 12 (48 B)"


def test_show_repeated_lists_every_call_and_counts_once():
    text = Net().tabulate(RNGS, jnp.ones((3, 2)), show_repeated=True, console_kwargs=PLAIN)
    table = rows(text)
    calls = [(r["path"], r["module"]) for r in table[:-1]]
    assert calls[:2] == [("", "Net"), ("", "Net (encode)")]
    heads = [r for r in table if r["path"] == "head"]
    assert [r["inputs"] for r in heads] == ["float32[3,4]", "float32[3,4]"]
    assert heads[0]["params"].endswith("10 (40 B)") and heads[1]["params"] == ""
    assert table[-1]["params"] == "30 (120 B)"


def test_method_argument_tabulates_that_method():
    text = Net().tabulate(RNGS, jnp.ones((3, 2)), method="encode", console_kwargs=PLAIN)
    table = rows(text)
    assert table[0]["module"] == "Net (encode)" and table[0]["outputs"] == "float32[3,4]"
    assert table[-1]["params"] == "20 (80 B)"  # no head: it is never called


def test_nested_inputs_and_outputs_are_listed():
    class Passthrough(nn.Module):
        @nn.compact
        def __call__(self, x):
            return {"a": x["q"], "b": (x["q"], 3)}

    text = Passthrough().tabulate(KEY, {"q": jnp.ones((2,)), "z": 1.5}, console_kwargs=PLAIN)
    (row, _) = rows(text)
    assert row["inputs"] == "q: float32[2] | z: 1.5"
    assert row["outputs"] == "a: float32[2] | b: | - float32[2] | - 3"
    assert total_line(text) == "Total Parameters:"


# --- the module-level function and the method agree; nothing is computed ------


def test_function_and_method_render_the_same_table():
    x = jnp.ones((4, 4))
    model = ExplicitMLP(features=[3, 4, 5])
    assert tabulate(model, KEY)(x) == model.tabulate(KEY, x)
    assert nn.tabulate is tabulate  # the contract's name: minilinen.tabulate


def test_tabulate_runs_abstractly():
    # 100,000 x 100,000 float32 weights are 40 GB: only shapes can be handled.
    text = nn.Dense(100_000).tabulate(KEY, jnp.ones((1, 100_000)), console_kwargs=PLAIN)
    assert total_line(text) == "Total Parameters: 10,000,100,000 (40.0 GB)"


def test_default_width_never_cuts_a_cell():
    text = nn.Dense(1000).tabulate(KEY, jnp.ones((1, 1000)))
    plain = ANSI.sub("", text)
    assert "…" not in plain and "kernel: float32[1000,1000]" in plain
    assert "\x1b[" in text  # styled for a terminal by default, as Flax does


def test_console_and_table_options_are_passed_to_rich():
    text = nn.Dense(3).tabulate(
        KEY,
        jnp.ones((4, 4)),
        console_kwargs={"force_terminal": False, "width": 50},
        table_kwargs={"title": "my title"},
    )
    assert "my title" in text
    assert max(len(line) for line in text.splitlines()) <= 50


# --- FLOPs ------------------------------------------------------------------------


def test_flops_come_from_xla_cost_analysis():
    # Dense 4->3 on 4 rows: 4*4*3 multiply-adds (2 flops each) + 4*3 bias adds = 108.
    text = ExplicitMLP(features=[3, 4, 5]).tabulate(
        KEY, jnp.ones((4, 4)), compute_flops=True, compute_vjp_flops=True, console_kwargs=PLAIN
    )
    table = rows(text)
    paths = by_path(table)
    assert paths["layers_0"]["flops"] == "108"
    assert paths["layers_1"]["flops"] == str(2 * 4 * 3 * 4 + 4 * 4)
    assert paths["layers_2"]["flops"] == str(2 * 4 * 4 * 5 + 4 * 5)
    root = float(paths[""]["flops"])
    assert root >= 108 + 112 + 180  # the layers, plus the relus between them
    for path in ("layers_0", "layers_1", "layers_2"):
        forward = float(paths[path]["flops"])
        # Forward, plus two matmuls of the same size for the input and kernel gradients.
        assert float(paths[path]["vjp_flops"]) >= 3 * (forward - 20)
    assert table[-1]["vjp_flops"] == "Total"


def test_flops_of_stochastic_and_stateful_layers():
    text = Net().tabulate(
        RNGS, jnp.ones((3, 2)), train=True, compute_flops=True, console_kwargs=PLAIN
    )
    paths = by_path(rows(text))
    assert all(float(paths[p]["flops"]) > 0 for p in ("", "block", "block/BatchNorm_0"))
    assert float(paths[""]["flops"]) > float(paths["block"]["flops"])


def test_tabulate_under_the_seeds_rng_setting():
    old = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        text = SimpleMLP(features=[3, 4, 5]).tabulate(KEY, jnp.ones((4, 4)), console_kwargs=PLAIN)
    finally:
        jax.config.update("jax_threefry_partitionable", old)
    assert total_line(text) == "Total Parameters: 56 (224 B)"


def test_modules_inside_lifted_transforms():
    from minilinen.transforms import vmap

    class Ensemble(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = vmap(nn.Dense, variable_axes={"params": 0}, split_rngs={"params": True})
            return dense(4)(x)

    # Five Dense 3->4 layers, stacked: 5 * (12 + 4) = 80 values.
    text = Ensemble().tabulate(KEY, jnp.ones((5, 2, 3)), compute_flops=True, console_kwargs=PLAIN)
    paths = by_path(rows(text))
    inner = paths["VmapDense_0"]
    assert (inner["inputs"], inner["outputs"]) == ("float32[2,3]", "float32[2,4]")  # one slice
    assert inner["params"] == "bias: float32[5,4] | kernel: float32[5,3,4] | 80 (320 B)"
    # FLOPs of one slice (2*3*4 multiply-adds + 8 bias adds), and five of them for the whole.
    assert inner["flops"] == str(2 * 2 * 3 * 4 + 2 * 4)
    assert paths[""]["flops"] == str(5 * (2 * 2 * 3 * 4 + 2 * 4))


def test_python_and_numpy_scalar_inputs():
    class AddOne(nn.Module):
        def __call__(self, x):
            return x + 1

    class Scalars(nn.Module):
        @nn.compact
        def __call__(self, n, s):
            return AddOne()(x=np.pi) * n * s

    text = Scalars().tabulate(
        {}, 2, np.float32(3.0), compute_flops=True, compute_vjp_flops=True, console_kwargs=PLAIN
    )
    paths = by_path(rows(text))
    # A constant computed from Python floats costs nothing, forward or backward (as in Flax).
    assert paths["AddOne_0"]["inputs"] == "x: 3.141592653589793"
    assert (paths["AddOne_0"]["flops"], paths["AddOne_0"]["vjp_flops"]) == ("0", "0")
    assert paths[""]["outputs"] == "float32[]"


def test_scan_and_vmap_leave_no_tracer_behind():
    class Step(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            return nn.Dense(3)(c) + x, None

    class Loop(nn.Module):
        @nn.compact
        def __call__(self, xs):
            scan = nn.scan(Step, variable_broadcast="params", split_rngs={"params": False})
            return scan()(jnp.zeros((3,)), xs)[0]

    with jax.check_tracer_leaks(True):
        text = Loop().tabulate(KEY, jnp.ones((4, 3)), compute_flops=True, console_kwargs=PLAIN)
    step = by_path(rows(text))["ScanStep_0/Dense_0"]
    assert step["params"] == "bias: float32[3] | kernel: float32[3,3] | 12 (48 B)"


# --- details of Flax's layout ---------------------------------------------------


def test_caption_is_set_off_by_a_blank_line_and_the_text_ends_with_one():
    lines = nn.Dense(3).tabulate(KEY, jnp.ones((1, 2)), console_kwargs=PLAIN).split("\n")
    assert lines[-3].strip() == "Total Parameters: 9 (36 B)"
    assert (lines[-4].strip(), lines[-2], lines[-1]) == ("", "", "")
    assert lines[-5].startswith("└") and "Total" in lines[-6]


def test_vjp_flops_pull_back_through_the_returned_variables_too():
    # Dense 9->4 on 16 rows: forward and two gradient matmuls (3 * 16*9*4 multiply-adds),
    # the bias add (64), its gradient summed over the rows (15*4), and one add per
    # variable for the cotangent of the variables apply(mutable=True) returns (40).
    text = nn.Dense(4).tabulate(
        KEY, jnp.ones((16, 9)), compute_vjp_flops=True, console_kwargs=PLAIN
    )
    assert rows(text)[0]["vjp_flops"] == str(3 * 2 * 16 * 9 * 4 + 64 + 15 * 4 + 40)


def test_partitioned_variables_show_their_mesh_axes():
    dense = nn.Dense(
        4,
        kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), (None, "model")),
        bias_init=nn.with_partitioning(nn.initializers.zeros_init(), ("model",)),
    )
    (row, _) = rows(dense.tabulate(KEY, jnp.ones((1, 2)), console_kwargs=PLAIN))
    assert row["params"] == (
        "bias: float32[4] P(model,) | kernel: float32[2,4] P(None, model) | 12 (48 B)"
    )


def test_keys_yaml_cannot_write_show_as_their_repr():
    class Key:
        def __repr__(self):
            return "Key()"

    class Lookup(nn.Module):
        def __call__(self, table):
            return list(table.values())[0]

    (row, _) = rows(Lookup().tabulate(KEY, {Key(): jnp.ones((2,))}, console_kwargs=PLAIN))
    assert row["inputs"] == "Key(): float32[2]"


def test_boxed_outputs_show_their_shape_and_mesh_axes():
    class Boxed(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Partitioned(nn.Dense(2)(x), ("data", None)), x

    (row, *_) = rows(Boxed().tabulate(KEY, jnp.ones((1, 3)), console_kwargs=PLAIN))
    assert row["outputs"] == "- float32[1,2] P(data, None) | - float32[1,3]"


def test_variables_that_are_not_arrays_are_listed_and_count_nothing():
    class Tags(nn.struct.PyTreeNode):
        names: tuple = nn.struct.field(pytree_node=False)

    class Tagger(nn.Module):
        @nn.compact
        def __call__(self):
            self.sow("tags", "seen", Tags(("a", "b")))

    lines = Tagger().tabulate({}, console_kwargs=PLAIN).splitlines()
    cells = [line.strip("│").split("│")[-1].rstrip() for line in lines[5:9]]
    assert cells == [" seen:", " - names:", "   - a", "   - b"]  # as Flax's YAML
    assert rows("\n".join(lines))[-1]["tags"] == ""  # footer: no values to count


def test_weight_norm_wrapper_rows_and_flops():
    class Wrapped(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.WeightNorm(nn.Dense(3))(x)

    text = Wrapped().tabulate(KEY, jnp.ones((1, 2)), compute_flops=True, console_kwargs=PLAIN)
    paths = by_path(rows(text))
    # The wrapped Dense keeps its variables at the model's level; the wrapper only its scale.
    # Its call through map_variables' body function is no row of its own (as in Flax).
    assert list(paths) == ["", "WeightNorm_0", "Dense_0"]
    assert "<lambda>" not in Wrapped().tabulate(KEY, jnp.ones((1, 2)), console_kwargs=PLAIN)
    assert paths["Dense_0"]["module"] == "Dense"
    assert paths["WeightNorm_0"]["params"] == "Dense_0/kernel/scale: float32[3] | 3 (12 B)"
    # Measured on its own, the wrapper's FLOPs include its wrapped layer's (1*2*3 * 2 + 3).
    assert paths["Dense_0"]["flops"] == "15"
    assert float(paths["WeightNorm_0"]["flops"]) > 15


# --- the same tables as Flax, byte for byte -----------------------------------------


@pytest.mark.parametrize("console", list(CONSOLES))
@pytest.mark.parametrize("name", list(CASES))
def test_tables_match_flax(name, console):
    # Recorded with the real Flax by golden/make_golden_summary.py.
    expected = json.loads(GOLDEN.read_text())["tables"][name][console]
    assert render(nn, name, console) == expected


# --- the cells' YAML, against the real yaml.safe_dump ---------------------------------------

# Pieces of the strings tabulate writes (shapes as markup, mesh axes, reprs), and strings YAML
# must quote: indicators, what reads back as a bool, null, number or date, spaces at the ends.
# (Not written as YAML writes them: line breaks and characters beyond printable ASCII, which
# YAML escapes in double quotes; no repr or markup tabulate writes holds them.)
PIECES = ["[dim]float32[/dim][4,3]", "float32[4,3]", "[dim]P[/dim](None, 'model')", "Key()", "a"]
PIECES += ["its: x", "a #b", "x:", ":", "?", "-", "- x", "#", "---", "...", "'", '"', "it's"]
PIECES += list("[]{},&*!|>%@`") + ["yes", "No", "TRUE", "off", "null", "~", "<<", "=", "None"]
PIECES += ["1", "-1", "3", "0x1F", "017", "0b10", "1_000", "1:20", "1.5", ".5", "1e5", "1.0e+5"]
PIECES += [".inf", "-.Inf", ".NaN", "nan", "2001-12-14", "2001-12-14 21:59:43.10 Z", "1.e-3"]
PIECES += ["", " ", "  ", "<function relu at 0x7f0>", "Dense(features=3)", "[dim](2,)[/dim]"]
TEXT = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=30).map(" ".join),  # long: folded past column 80
    st.lists(st.sampled_from(PIECES) | st.text(" a:#-'\"?,[]{}", max_size=5)).map("".join),
)


# Keys as YAML writes them simply: not empty, shorter than 123 characters.
def simple_key(text):
    return 0 < len(text) < 123


KEYS = TEXT.filter(simple_key)
TREES = st.recursive(
    TEXT,
    lambda kids: st.lists(kids, max_size=4).map(tuple) | st.dictionaries(KEYS, kids, max_size=4),
)


def safe_dump(value):
    text = yaml.safe_dump(value, default_flow_style=False, indent=2, sort_keys=False)
    return text.removesuffix("...\n") if text.endswith("\n...\n") else text  # a lone plain string


@settings(max_examples=3000, deadline=None)
@given(TREES)
def test_cells_are_written_as_yaml_safe_dump_writes_them(tree):
    assert _dump(tree) + "\n" == safe_dump(tree)


@pytest.mark.parametrize(
    "text", PIECES + ["w " * 50, "its: x " * 20, "'a b' " * 30, "  x  y " * 30]
)
def test_each_kind_of_string_as_yaml_writes_it(text):
    for tree in (text, {"key": text}, (text, {"k": (text,)}), {"k": {"j": text}}):
        assert _dump(tree) + "\n" == safe_dump(tree)
    if simple_key(text):  # as a key too
        assert _dump({text: "v"}) + "\n" == safe_dump({text: "v"})


def test_tabulate_needs_no_yaml():
    # pyyaml is a test dependency only: minilinen imports and tabulates where it is missing.
    script = (
        "import sys; sys.modules['yaml'] = None\n"
        "import jax, jax.numpy as jnp, minilinen as nn\n"
        "print(nn.Dense(3).tabulate(jax.random.key(0), jnp.ones((1, 2)), console_kwargs="
        "{'force_terminal': False}))"
    )
    root = Path(__file__).parent.parent  # minilinen from this checkout
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert "kernel: float32[2,3]" in out.stdout and "Total Parameters: 9 (36 B)" in out.stdout
