"""Partitioning metadata: boxed parameters, partition specs and shardings, logical
axis names and their rules (one device here; tests/test_sharding_multidevice.py
runs on eight)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import minilinen as nn
from minilinen import errors
from minilinen.partitioning import (
    PARTITION_NAME,
    LogicallyPartitioned,
    Partitioned,
    get_logical_axis_rules,
    get_partition_spec,
    get_sharding,
    logical_axis_rules,
    logical_to_mesh,
    logical_to_mesh_axes,
    logical_to_mesh_sharding,
    unbox,
    with_logical_partitioning,
    with_partitioning,
)
from minilinen.transforms import scan

lecun = nn.initializers.lecun_normal()


class Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8, kernel_init=with_partitioning(lecun, ("data", "model")))(x)
        return nn.Dense(2, kernel_init=with_logical_partitioning(lecun, ("mlp", "embed")))(x)


def test_boxed_params_are_read_unboxed_and_kept_boxed_in_the_tree():
    x = jnp.ones((3, 4))
    variables = Mlp().init(jax.random.PRNGKey(0), x)
    kernel = variables["params"]["Dense_0"]["kernel"]
    assert isinstance(kernel, Partitioned) and kernel.names == ("data", "model")
    assert isinstance(variables["params"]["Dense_1"]["kernel"], LogicallyPartitioned)
    plain = unbox(variables)
    assert isinstance(plain["params"]["Dense_0"]["kernel"], jax.Array)

    # The box changes nothing about the values: same params as an unboxed Dense.
    class Plain(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(8)(x)
            return nn.Dense(2)(x)

    same = Plain().init(jax.random.PRNGKey(0), x)
    np.testing.assert_array_equal(
        plain["params"]["Dense_0"]["kernel"], same["params"]["Dense_0"]["kernel"]
    )
    out = Mlp().apply(variables, x)
    np.testing.assert_allclose(out, Mlp().apply(plain, x), rtol=1e-6)
    np.testing.assert_allclose(out, Plain().apply(same, x), rtol=1e-6)


def test_boxes_are_pytrees_through_jit_and_grad():
    x = jnp.ones((3, 4))
    variables = Mlp().init(jax.random.PRNGKey(0), x)
    grads = jax.jit(jax.grad(lambda v: jnp.sum(Mlp().apply(v, x) ** 2)))(variables)
    g = grads["params"]["Dense_0"]["kernel"]
    assert isinstance(g, Partitioned) and g.names == ("data", "model")
    assert g.value.shape == (4, 8)
    doubled = jax.tree_util.tree_map(lambda a: a * 2, variables)
    np.testing.assert_allclose(
        unbox(doubled)["params"]["Dense_0"]["kernel"],
        2 * unbox(variables)["params"]["Dense_0"]["kernel"],
    )


def test_partition_specs_and_shardings():
    variables = Mlp().init(jax.random.PRNGKey(0), jnp.ones((3, 4)))
    specs = get_partition_spec(variables)
    assert specs["params"]["Dense_0"]["kernel"] == PartitionSpec("data", "model")
    assert specs["params"]["Dense_0"]["bias"] == PartitionSpec()  # unboxed: replicated
    assert specs["params"]["Dense_1"]["kernel"] == PartitionSpec("mlp", "embed")
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    with logical_axis_rules([("mlp", "model"), ("embed", "data")]):
        mesh_specs = logical_to_mesh(specs)
        shardings = logical_to_mesh_sharding(specs, mesh)
    assert mesh_specs["params"]["Dense_1"]["kernel"] == PartitionSpec("model", "data")
    assert shardings["params"]["Dense_1"]["kernel"].spec == PartitionSpec("model", "data")
    # Names no rule maps are unsharded (as in Flax), mesh names included.
    assert shardings["params"]["Dense_0"]["kernel"].spec == PartitionSpec(None, None)
    params = jax.jit(lambda k: unbox(Mlp().init(k, jnp.ones((3, 4)))), out_shardings=shardings)(
        jax.random.PRNGKey(0)
    )
    assert params["params"]["Dense_1"]["kernel"].sharding.spec == PartitionSpec("model", "data")

    class MeshNamed(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(8, kernel_init=with_partitioning(lecun, (None, "model")))(x)

    boxed = MeshNamed().init(jax.random.PRNGKey(0), jnp.ones((3, 4)))
    direct = get_sharding(boxed, mesh)
    assert direct["params"]["Dense_0"]["kernel"] == NamedSharding(
        mesh, PartitionSpec(None, "model")
    )
    assert direct["params"]["Dense_0"]["bias"] == NamedSharding(mesh, PartitionSpec())


def test_logical_rules_first_match_wins_and_a_mesh_axis_shards_one_dimension():
    rules = [("batch", "data"), ("embed", "model"), ("mlp", "model"), ("heads", ("data", "model"))]
    assert logical_to_mesh_axes(("batch", "embed"), rules) == PartitionSpec("data", "model")
    # 'model' is taken by 'embed', so 'mlp' stays unsharded.
    assert logical_to_mesh_axes(("embed", "mlp"), rules) == PartitionSpec("model", None)
    assert logical_to_mesh_axes(("mlp", None, "unknown"), rules) == PartitionSpec(
        "model", None, None
    )
    assert logical_to_mesh_axes(("heads",), rules) == PartitionSpec(("data", "model"))
    assert logical_to_mesh_axes(None, rules) is None
    with pytest.raises(errors.TransformError, match="more than once"):
        logical_to_mesh_axes(("embed", "embed"), rules)


def test_logical_axis_rules_nest_and_restore():
    assert get_logical_axis_rules() == ()
    with logical_axis_rules([("embed", "data")]):
        with logical_axis_rules([("embed", "model")]):
            assert logical_to_mesh_axes(("embed",)) == PartitionSpec("model")
        assert logical_to_mesh_axes(("embed",)) == PartitionSpec("data")
    assert get_logical_axis_rules() == ()


def test_variable_value_writes_keep_the_box():
    class Counter(nn.Module):
        @nn.compact
        def __call__(self):
            count = self.variable("state", "count", with_partitioning(jnp.zeros, ("data",)), (4,))
            count.value = count.value + 1
            return count.value

    variables = Counter().init(jax.random.PRNGKey(0))
    out, state = Counter().apply(variables, mutable=["state"])
    box = state["state"]["count"]
    assert isinstance(box, Partitioned) and box.names == ("data",)
    np.testing.assert_array_equal(box.value, 2 * np.ones(4))
    np.testing.assert_array_equal(out, 2 * np.ones(4))


def test_scan_adds_the_layer_axis_to_the_names():
    class Step(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            kernel_init = with_partitioning(lecun, ("embed", "mlp"))
            return nn.Dense(4, kernel_init=kernel_init)(x), None

    def model(**options):
        class Model(nn.Module):
            @nn.compact
            def __call__(self, x):
                layers = scan(
                    Step,
                    variable_axes={"params": 0},
                    split_rngs={"params": True},
                    length=3,
                    **options,
                )
                return layers()(x, None)[0]

        return Model()

    x = jnp.ones((2, 4))
    variables = model(metadata_params={PARTITION_NAME: "layers"}).init(jax.random.PRNGKey(0), x)
    kernel = variables["params"]["ScanStep_0"]["Dense_0"]["kernel"]
    assert kernel.names == ("layers", "embed", "mlp") and kernel.value.shape == (3, 4, 4)
    out = model(metadata_params={PARTITION_NAME: "layers"}).apply(variables, x)
    assert out.shape == (2, 4)
    with pytest.raises(errors.TransformError, match="metadata_params"):
        model().init(jax.random.PRNGKey(0), x)


def test_unbox_constrains_to_the_box_mesh_inside_jit():
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    box = Partitioned(jnp.ones((4,)), ("data",), mesh)
    jaxpr = str(jax.make_jaxpr(lambda b: b.unbox() * 2)(box))
    assert "sharding_constraint" in jaxpr
    assert "sharding_constraint" not in str(jax.make_jaxpr(lambda b: b.unbox(False))(box))
    np.testing.assert_array_equal(jax.jit(lambda b: b.unbox())(box), np.ones(4))


def test_add_and_remove_axis_check_the_name():
    box = Partitioned(jnp.ones((2, 3)), ("a", "b"))
    assert box.add_axis(0, {PARTITION_NAME: "l"}).names == ("l", "a", "b")
    assert box.add_axis(3, {PARTITION_NAME: None}).names == ("a", "b", None, None)
    assert box.remove_axis(1, {PARTITION_NAME: "b"}).names == ("a",)
    with pytest.raises(errors.TransformError, match="partitioned as 'a'"):
        box.remove_axis(0, {PARTITION_NAME: "b"})
    with pytest.raises(errors.TransformError, match="metadata_params"):
        box.add_axis(0, {})


# --- T5X-style API (flax.linen.partitioning) and minilinen.spmd -----------------

from minilinen import partitioning, spmd  # noqa: E402


def test_module_layout_matches_flax_and_old_imports_keep_working():
    # Boxes live in core.meta, logical rules in spmd; partitioning re-exports both.
    from minilinen.core import meta

    assert partitioning.Partitioned is meta.Partitioned is nn.Partitioned
    assert partitioning.LogicallyPartitioned is spmd.LogicallyPartitioned
    assert partitioning.axis_rules is spmd.logical_axis_rules is nn.logical_axis_rules
    assert partitioning.with_sharding_constraint is spmd.with_logical_constraint
    # nn.remat is the transform; partitioning.remat is Flax's legacy variant.
    assert nn.remat is nn.checkpoint and nn.remat is not partitioning.remat


def test_constraints_are_emitted_once_a_mesh_is_set():
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            w = partitioning.param_with_axes("w", lecun, (4, 2), axes=("embed", "mlp"))
            s = partitioning.variable_with_axes("state", "s", jnp.zeros, (2,), axes=("mlp",))
            s.value = s.value + 1
            return x @ w

    def run():
        return Model().init(jax.random.PRNGKey(0), jnp.ones((3, 4)))

    with logical_axis_rules((("embed", "data"),)):
        assert "sharding_constraint" not in str(jax.make_jaxpr(run)())  # no mesh: no-op
        with jax.set_mesh(mesh):
            jaxpr = str(jax.make_jaxpr(run)())
    # One constraint for the param, one each for the variable's init, read and write.
    assert jaxpr.count("sharding_constraint") == 4
    variables = run()
    assert variables["state"]["s"].tolist() == [1.0, 1.0]
    assert partitioning.get_axis_names(variables["state_axes"]) == {"s": PartitionSpec("mlp")}


def test_axis_names_recorded_twice_must_agree():
    class Twice(nn.Module):
        names: tuple

        @nn.compact
        def __call__(self, x):
            partitioning.param_with_axes("w", lecun, (2, 2), axes=("a", "b"))
            # What a second call of a scanned layer does: record the same names again.
            self.sow("params_axes", "w_axes", partitioning.AxisMetadata(self.names),
                     reduce_fn=partitioning._same_axes)  # fmt: skip
            return x

    variables = Twice(("a", "b")).init(jax.random.PRNGKey(0), 1.0)
    assert variables["params_axes"]["w_axes"] == partitioning.AxisMetadata(("a", "b"))
    with pytest.raises(ValueError, match="differ"):
        Twice(("b", "a")).init(jax.random.PRNGKey(0), 1.0)


def test_param_with_axes_outside_a_module_says_where_it_runs():
    with pytest.raises(errors.TransformError, match="inside a Module method"):
        partitioning.param_with_axes("w", lecun, (2, 2), axes=("a", "b"))


def test_unmatched_logical_names_follow_the_fallback():
    x = jnp.ones((2, 2))
    rules = (("a", "data"),)
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))

    def count(fallback):
        fn = lambda x: spmd.with_logical_constraint(x, ("a", "zz"), rules, mesh, fallback)  # noqa: E731
        return str(jax.make_jaxpr(fn)(x)).count("sharding_constraint")

    assert count(spmd.RulesFallback.AXIS_IS_UNSHARDED) == 1
    assert count(spmd.RulesFallback.NO_CONSTRAINT) == 0
    with pytest.raises(ValueError, match="match no rule"):
        count(spmd.RulesFallback.RAISE_ERROR)
