"""Golden cases for the lifted transforms, written once as functions of ``nn``.

``nn`` is ``flax.linen`` when ``make_golden_transforms.py`` records the goldens and
minilinen's namespace when ``tests/test_transforms_golden.py`` checks them. A case
returns a :class:`Case`: the module, the arguments, the rngs of ``init``, the
keyword arguments of ``apply``, extra collections to add before ``apply``, and
whether to also record the gradient of the output's sum with respect to params.
Every model is tiny: the point is the parameter trees, RNG splitting and the
values, not the size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass
class Case:
    """``init(rngs, *args)``, then ``apply(variables | extra, *args, **apply_kwargs)``."""

    module: Any
    args: tuple
    rngs: Any
    apply_kwargs: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)
    grad: bool = False


CASES: dict[str, Callable[[Any], Case]] = {}


def case(fn: Callable[[Any], Case]) -> Callable[[Any], Case]:
    """Register a case under its function name."""
    CASES[fn.__name__] = fn
    return fn


def key(seed: int) -> jax.Array:
    """A raw uint32 PRNG key."""
    return jax.random.PRNGKey(seed)


def data(*shape: int, phase: float = 0.0) -> jax.Array:
    """Deterministic float32 inputs that do not depend on the threefry setting."""
    n = 1
    for s in shape:
        n *= s
    return jnp.sin(jnp.arange(n, dtype=jnp.float32) * 0.37 + phase).reshape(shape)


def blocks(nn: Any) -> Any:
    """The small modules the cases transform."""

    class Block(nn.Module):
        features: int = 3

        @nn.compact
        def __call__(self, x):
            return nn.relu(nn.Dense(self.features)(x))

    class CarryBlock(nn.Module):
        @nn.compact
        def __call__(self, c, _):
            return Block()(c), None

    class Step(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            h = nn.Dense(3)(c) + x
            return nn.tanh(h), h.sum(-1)

    class Mlp(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.relu(nn.Dense(4)(x)))

    class NoisyMlp(nn.Module):
        @nn.compact
        def __call__(self, x, train=True):
            x = nn.Dense(4)(x)
            x = nn.Dropout(0.5, deterministic=not train)(x)
            return nn.Dense(3)(x)

    class Tied(nn.Module):
        def setup(self):
            self.dense = nn.Dense(3)
            self.scale = self.param("scale", nn.initializers.normal(1.0), (3,))

        def __call__(self, c, x):
            return nn.tanh(self.dense(c) * self.scale + x), None

    class NormStep(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            h = nn.Dense(3)(c) + x
            h = nn.BatchNorm(use_running_average=False)(h)
            h = nn.Dropout(0.5, deterministic=False)(h)
            if self.has_variable("counter", "n"):
                count = self.variable("counter", "n")
                count.value = count.value + 1
            return nn.tanh(h), h.mean(-1)

    class ShardedStep(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            dense = nn.Dense(
                4,
                kernel_init=nn.with_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("mlp",)),
            )
            return dense(x), None

    return locals()


# --- nn.scan ---------------------------------------------------------------


@case
def scan_stacked_blocks(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            stack = nn.scan(
                b["CarryBlock"],
                variable_axes={"params": 0},
                split_rngs={"params": True},
                length=4,
            )
            return stack(name="layers")(x, None)[0]

    return Case(Model(), (data(2, 3),), key(0), grad=True)


@case
def scan_inputs_and_outputs_on_axis_1(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, xs):
            step = nn.scan(
                b["Step"],
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=1,
                out_axes=1,
            )
            return step()(c, xs)

    return Case(Model(), (data(2, 3), data(2, 5, 3, phase=1.0)), key(1), grad=True)


@case
def scan_broadcast_params_from_setup(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            loop = nn.scan(
                b["Tied"],
                variable_broadcast="params",
                split_rngs={"params": False},
                in_axes=nn.broadcast,
                length=3,
            )
            return loop(name="tied")(c, x)[0]

    return Case(Model(), (data(2, 3), data(2, 3, phase=0.5)), key(2), grad=True)


@case
def scan_batchnorm_dropout_carry_reverse(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, xs):
            step = nn.scan(
                b["NormStep"],
                variable_axes={"params": 0, "batch_stats": 0},
                variable_carry="counter",
                split_rngs={"params": True, "dropout": True},
                reverse=True,
                unroll=2,
            )
            return step(name="s")(c, xs)

    return Case(
        Model(),
        (data(2, 3), data(4, 2, 3, phase=2.0)),
        {"params": key(3), "dropout": key(4)},
        apply_kwargs={"rngs": {"dropout": key(5)}, "mutable": ["batch_stats", "counter"]},
        extra={"counter": {"s": {"n": jnp.zeros((), jnp.int32)}}},
    )


@case
def scan_without_constancy_check(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, xs):
            step = nn.scan(
                b["Tied"],
                variable_axes={"params": 0},
                split_rngs={"params": True},
                check_constancy_invariants=False,
            )
            return step()(c, xs)[0]

    return Case(Model(), (data(2, 3), data(3, 2, 3, phase=1.5)), key(6))


@case
def scan_partitioned_params(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            stack = nn.scan(
                b["ShardedStep"],
                variable_axes={"params": 0},
                split_rngs={"params": True},
                length=3,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            return stack()(x, None)[0]

    return Case(Model(), (data(2, 4),), key(7))


@case
def scan_of_remat_blocks(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            stack = nn.scan(
                nn.remat(b["CarryBlock"]),
                variable_axes={"params": 0},
                split_rngs={"params": True},
                length=3,
            )
            return stack()(x, None)[0]

    return Case(Model(), (data(2, 3),), key(8), grad=True)


@case
def scan_of_vmap(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, xs):
            mapped = nn.vmap(b["Step"], variable_axes={"params": 0}, split_rngs={"params": True})
            step = nn.scan(mapped, variable_axes={"params": 0}, split_rngs={"params": True})
            return step()(c, xs)

    return Case(Model(), (data(2, 3), data(3, 2, 3, phase=0.7)), key(9))


@case
def scan_in_only_and_out_only_collections(nn):
    # ScanIn: 'consts' is sliced per iteration but never written back; ScanOut: 'stats'
    # starts fresh inside (the 100s given to apply are not read) and is stacked out.
    p = nn.partitioning

    class MarkedStep(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            h = nn.Dense(3)(c) + x
            if self.has_variable("consts", "w"):
                h = h * self.get_variable("consts", "w")
            total = self.variable("stats", "sum", lambda: jnp.zeros(3))
            total.value = total.value + h.sum(0)
            return nn.tanh(h), h.sum(-1)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, c, xs):
            step = nn.scan(
                MarkedStep,
                variable_axes={"params": 0, "consts": p.ScanIn(0), "stats": p.ScanOut(0)},
                split_rngs={"params": True},
            )
            return step(name="s")(c, xs)

    return Case(
        Model(),
        (data(2, 3), data(4, 2, 3, phase=0.4)),
        key(48),
        apply_kwargs={"mutable": ["stats", "consts"]},
        extra={
            "consts": {"s": {"w": data(4, 3, phase=1.1)}},
            "stats": {"s": {"sum": jnp.full((4, 3), 100.0)}},
        },
        grad=True,
    )


# --- nn.vmap ---------------------------------------------------------------


@case
def vmap_stacked_params(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            mapped = nn.vmap(b["Mlp"], variable_axes={"params": 0}, split_rngs={"params": True})
            return mapped(name="ensemble")(x)

    return Case(Model(), (data(4, 2, 3),), key(10), grad=True)


@case
def vmap_shared_params_axis_1(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            mapped = nn.vmap(
                b["Mlp"],
                variable_axes={"params": None},
                split_rngs={"params": False},
                in_axes=1,
                out_axes=1,
            )
            return mapped()(x)

    return Case(Model(), (data(2, 5, 3),), key(11))


@case
def vmap_batchnorm_axis_name(nn):
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            mapped = nn.vmap(
                nn.BatchNorm,
                variable_axes={"params": None, "batch_stats": None},
                split_rngs={"params": False},
                axis_name="batch",
            )
            return mapped(use_running_average=False, axis_name="batch")(x)

    return Case(
        Model(),
        (data(5, 2, 3, phase=0.3) * 3.0,),
        key(12),
        apply_kwargs={"mutable": ["batch_stats"]},
    )


@case
def vmap_split_dropout(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            mapped = nn.vmap(
                b["NoisyMlp"],
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
            )
            return mapped()(x)

    return Case(
        Model(),
        (data(3, 2, 3),),
        {"params": key(13), "dropout": key(14)},
        apply_kwargs={"rngs": {"dropout": key(15)}},
    )


@case
def vmap_partitioned_params_axis_1(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            mapped = nn.vmap(
                b["ShardedStep"],
                variable_axes={"params": 1},
                split_rngs={"params": True},
                in_axes=(0, None),
                metadata_params={nn.PARTITION_NAME: None},
            )
            return mapped()(x, None)[0]

    return Case(Model(), (data(3, 2, 4),), key(16))


@case
def vmap_in_only_and_out_only_collections(nn):
    p = nn.partitioning

    class Member(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Dense(3)(x)
            if self.has_variable("consts", "w"):
                h = h * self.get_variable("consts", "w")
            total = self.variable("stats", "sum", lambda: jnp.zeros(3))
            total.value = total.value + h.sum(0)
            return h

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            mapped = nn.vmap(
                Member,
                variable_axes={"params": None, "consts": p.ScanIn(0), "stats": p.ScanOut(1)},
                split_rngs={"params": False},
            )
            return mapped(name="m")(x)

    return Case(
        Model(),
        (data(3, 2, 4),),
        key(49),
        apply_kwargs={"mutable": ["stats", "consts"]},
        extra={
            "consts": {"m": {"w": data(3, 3, phase=0.9)}},
            "stats": {"m": {"sum": jnp.full((3, 3), 100.0)}},
        },
        grad=True,
    )


# --- nn.remat / nn.remat_scan ----------------------------------------------


@case
def remat_two_blocks(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.remat(b["Mlp"])()(x)
            return nn.remat(b["Mlp"], prevent_cse=False)(name="second")(x)

    return Case(Model(), (data(2, 3),), key(17), grad=True)


@case
def remat_static_argnums_dropout(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            layer = nn.remat(
                b["NoisyMlp"],
                static_argnums=(2,),
                policy=jax.checkpoint_policies.nothing_saveable,
            )
            return layer()(x, True)

    return Case(
        Model(),
        (data(2, 3),),
        {"params": key(18), "dropout": key(19)},
        apply_kwargs={"rngs": {"dropout": key(20)}},
        grad=True,
    )


@case
def remat_decorated_method(nn):
    class Model(nn.Module):
        @nn.remat
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.tanh(nn.Dense(4)(x)))

    return Case(Model(), (data(2, 3),), key(21), grad=True)


@case
def remat_scan_2x3(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.remat_scan(b["Block"], lengths=(2, 3))(name="deep")(x)

    return Case(Model(), (data(2, 3),), key(22), grad=True)


@case
def remat_method_called_from_compact(nn):
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return self.head(nn.Dense(3)(x))

        @nn.remat
        @nn.compact
        def head(self, x):
            return nn.Dense(2)(x)

    return Case(Model(), (data(2, 4),), key(29), grad=True)


# --- nn.map_variables --------------------------------------------------------


@case
def map_variables_scaled_view(nn):
    b = blocks(nn)

    def halve(variables):
        return jax.tree_util.tree_map(lambda v: v * 0.5, variables)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.map_variables(b["Mlp"], "params", halve, init=True)()(x)

    return Case(Model(), (data(2, 3),), key(23), grad=True)


@case
def map_variables_transposed_kernels(nn):
    def transpose(variables):
        return jax.tree_util.tree_map(lambda v: v.T, variables)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.map_variables(
                nn.Dense, "params", transpose, transpose, init=True, mutable=True
            )
            return dense(3, use_bias=False, name="t")(x)

    return Case(Model(), (data(2, 4),), key(24), grad=True)


# --- nn.jit ----------------------------------------------------------------


@case
def jit_called_twice_with_dropout(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            layer = nn.jit(b["NoisyMlp"])()
            x = layer(x)
            x = layer(x)
            return nn.jit(b["NoisyMlp"])(name="other")(x)

    return Case(
        Model(),
        (data(2, 3),),
        {"params": key(25), "dropout": key(26)},
        apply_kwargs={"rngs": {"dropout": key(27)}},
    )


@case
def jit_decorated_method(nn):
    class Model(nn.Module):
        @nn.jit
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.Dense(4)(x))

    return Case(Model(), (data(2, 3),), key(28))


# --- nn.vjp, nn.jvp, nn.grad, nn.value_and_grad, nn.custom_vjp ----------------


@case
def vjp_params_and_inputs(nn):
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            y, bwd = nn.vjp(lambda mdl, x: mdl(x), nn.Dense(3), x)
            params_t, x_t = bwd(jnp.cos(y))
            return y, params_t, x_t

    return Case(Model(), (data(2, 4),), key(30), grad=True)


@case
def vjp_aux_dropout_and_state(nn):
    b = blocks(nn)

    def fn(mdl, x):
        y = mdl(x)
        mdl.sow("intermediates", "y", y)
        return y, y.sum()

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            y, bwd, aux = nn.vjp(fn, b["NoisyMlp"](), x, has_aux=True)
            return y, aux, bwd(jnp.ones_like(y))

    return Case(
        Model(),
        (data(2, 3),),
        {"params": key(31), "dropout": key(32)},
        apply_kwargs={"rngs": {"dropout": key(33)}, "mutable": ["intermediates"]},
    )


@case
def value_and_grad_with_aux(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, t):
            def loss(mdl, x, t):
                y = mdl(x)
                return jnp.mean((y - t) ** 2), y

            (value, y), (x_t, t_t) = nn.value_and_grad(loss, b["Mlp"](), x, t, has_aux=True)
            return y, value, x_t, t_t

    return Case(Model(), (data(2, 3), data(2, 3, phase=1.0)), key(34), grad=True)


@case
def grad_of_inputs_twice(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            mlp = b["Mlp"]()
            (x_t,) = nn.grad(lambda mdl, x: jnp.sum(jnp.sin(mdl(x))), mlp, x)
            (again,) = nn.grad(lambda mdl, x: jnp.sum(mdl(x)), mlp, x)
            return x_t + again

    return Case(Model(), (data(2, 3),), key(35), grad=True)


@case
def jvp_with_variable_tangents(nn):
    b = blocks(nn)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            mlp = b["Mlp"]()
            y = mlp(x)  # creates the params, so they can have tangents
            tangents = jax.tree_util.tree_map(jnp.cos, mlp.variables["params"])
            y2, y_t = nn.jvp(lambda mdl, x: mdl(x), mlp, (x,), (jnp.sin(x),), {"params": tangents})
            return y + y2, y_t

    return Case(Model(), (data(2, 3),), key(36), grad=True)


@case
def custom_vjp_sign_gradient(nn):
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            def f(mdl, x):
                return mdl(x)

            def fwd(mdl, x):
                return nn.vjp(f, mdl, x)

            def bwd(vjp_fn, y_t):
                params_t, *inputs_t = vjp_fn(y_t)
                return (jax.tree_util.tree_map(jnp.sign, params_t), *inputs_t)

            sign_grad = nn.custom_vjp(f, forward_fn=fwd, backward_fn=bwd)
            return sign_grad(nn.Dense(3), x) * 2.0

    return Case(Model(), (data(2, 4),), key(37), grad=True)


# --- nn.cond, nn.switch, nn.while_loop ---------------------------------------


@case
def cond_counts_and_dropout(nn):
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, pred):
            self.variable("state", "true_count", lambda: 0)
            self.variable("state", "false_count", lambda: 0)

            def true_fn(mdl, x):
                mdl.variable("state", "true_count").value += 1
                return nn.Dropout(0.5, deterministic=False)(nn.Dense(2, name="dense")(x))

            def false_fn(mdl, x):
                mdl.variable("state", "false_count").value += 1
                return -nn.Dense(2, name="dense")(x) + mdl.make_rng("dropout")[0] * 0

            return nn.cond(pred, true_fn, false_fn, self, x)

    return Case(
        Model(),
        (data(2, 3), jnp.array(True)),
        {"params": key(38), "dropout": key(39)},
        apply_kwargs={"rngs": {"dropout": key(40)}, "mutable": ["state"]},
        grad=True,
    )


@case
def switch_heads_of_different_shapes(nn):
    b = blocks(nn)

    class Model(nn.Module):
        def setup(self):
            self.heads = [b["Mlp"](), nn.Dense(3), b["Block"]()]

        @nn.compact
        def __call__(self, x, index):
            branches = [lambda mdl, x, i=i: mdl.heads[i](x) for i in range(3)]
            if self.is_mutable_collection("params"):
                for branch in branches:
                    branch(self, x)
            return nn.switch(index, branches, self, x)

    return Case(Model(), (data(2, 3), jnp.array(1)), key(41), grad=True)


@case
def while_loop_state_and_split_rngs(nn):
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            def cond_fn(mdl, c):
                return mdl.variables["state"]["acc"] < 3

            def body_fn(mdl, c):
                acc = mdl.variable("state", "acc", lambda: jnp.array(0))
                acc.value += 1
                y = nn.Dense(c.shape[-1])(c)
                return nn.Dropout(0.3, deterministic=False)(nn.tanh(y))

            if self.is_mutable_collection("params"):
                return body_fn(self, x)
            return nn.while_loop(
                cond_fn, body_fn, self, x, carry_variables="state", split_rngs={"dropout": True}
            )

    return Case(
        Model(),
        (data(2, 3),),
        {"params": key(42), "dropout": key(43)},
        apply_kwargs={"rngs": {"dropout": key(44)}, "mutable": ["state"]},
    )


# --- nn.share_scope, nn.compact_name_scope -----------------------------------


@case
def share_scope_lora_on_outside_dense(nn):
    class DenseLoRA(nn.Module):
        base: Any
        rank: int = 2

        def setup(self):
            nn.share_scope(self, self.base)

        @nn.compact
        def __call__(self, x):
            a = self.param("A", nn.initializers.normal(0.1), (x.shape[-1], self.rank))
            b = self.param("B", nn.initializers.normal(0.1), (self.rank, self.base.features))
            return self.base(x) + x @ a @ b

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return DenseLoRA(nn.Dense(3))(x)

    return Case(Model(), (data(2, 4),), key(45), grad=True)


@case
def share_scope_with_own_child(nn):
    class Wrapped(nn.Module):
        def setup(self):
            self.child = nn.Dense(3)
            nn.share_scope(self, self.child)

        @nn.compact
        def __call__(self, x):
            scale = self.param("scale", nn.initializers.normal(1.0), (3,))
            return self.child(x) * scale

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Wrapped()(x) + Wrapped(name="second")(x)

    return Case(Model(), (data(2, 4),), key(46), grad=True)


@case
def compact_name_scope_methods(nn):
    class Model(nn.Module):
        @nn.compact_name_scope
        def up(self, x):
            return nn.Dense(3)(x)

        @nn.compact_name_scope
        def down(self, x):
            scale = self.param("scale", nn.initializers.normal(1.0), (3,))
            return nn.Dense(3)(nn.relu(x)) * scale

        @nn.compact
        def __call__(self, x):
            return self.down(self.up(x)) + nn.Dense(3)(x) + self.up(x)

    return Case(Model(), (data(2, 3),), key(47), grad=True)


@case
def add_metadata_axis_partitioned_kernel(nn):
    class Inner(nn.Module):
        @nn.compact
        def __call__(self, x):
            init = nn.with_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
            return nn.Dense(3, kernel_init=init, name="dense")(x)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            # The transform adds a "layers" entry to the boxes' names outside only.
            lifted = nn.add_metadata_axis(
                Inner, variable_axes={"params": 0}, metadata_params={nn.PARTITION_NAME: "layers"}
            )
            return lifted(name="inner")(x)

    return Case(Model(), (data(2, 4),), key(50), grad=True)


# --- running a case (the same code records and checks) ------------------------


def box_names(tree: Any, prefix: str = "") -> dict[str, list]:
    """The axis names of every partitioning box in ``tree``, by '/'-joined path."""
    if hasattr(tree, "names") and hasattr(tree, "value"):
        return {prefix: [list(n) if isinstance(n, tuple) else n for n in tree.names]}
    out: dict[str, list] = {}
    if hasattr(tree, "items"):
        for k, v in tree.items():
            out.update(box_names(v, f"{prefix}/{k}"))
    return out


def with_extra(variables: Any, extra: dict) -> dict:
    """``variables`` as a plain dict of collections, with ``extra`` collections added."""
    return {**{col: variables[col] for col in variables}, **extra}


def apply_case(c: Case, variables: Any) -> Any:
    """The case's ``apply`` on ``variables`` (plus its extra collections)."""
    return c.module.apply(with_extra(variables, c.extra), *c.args, **c.apply_kwargs)


def grad_case(c: Case, variables: Any) -> Any:
    """The gradient, with respect to params, of the sum of the output's first array."""

    def loss(params):
        out = apply_case(c, {**with_extra(variables, {}), "params": params})
        if c.apply_kwargs.get("mutable"):
            out = out[0]
        return jnp.sum(jax.tree_util.tree_leaves(out)[0])

    return jax.grad(loss)(variables["params"])
