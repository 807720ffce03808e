"""Module-system behaviour real Flax code relies on (issue 11): each case checked
against flax 0.12.8 by hand; names and paths here are the ones Flax produces."""

import copy
import dataclasses
import gc
import weakref

import cloudpickle
import jax
import jax.numpy as jnp
import pytest

import minilinen as nn
from minilinen import errors

KEY = jax.random.PRNGKey(0)
X = jnp.ones((1, 2))


def shapes(tree):
    return jax.tree_util.tree_map(jnp.shape, nn.core.unfreeze(tree))


class Seq(nn.Module):
    layers: tuple

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Bar(nn.Module):
    def setup(self):
        self.baz = nn.Dense(5)

    def __call__(self, x):
        return self.baz(x)


DENSE = lambda i, o: {"bias": (o,), "kernel": (i, o)}  # noqa: E731


def test_submodules_reached_through_a_setup_attribute_are_bound():
    class A(nn.Module):
        def setup(self):
            self.seq = Seq([nn.Dense(3), nn.Dense(4)])
            self.bar = Bar()

        def __call__(self, x):
            return self.bar.baz(self.seq.layers[0](x)[:, :2])

    assert shapes(A().init(KEY, X)) == {
        "params": {"seq": {"layers_0": DENSE(2, 3)}, "bar": {"baz": DENSE(2, 5)}}
    }


def test_submodules_reached_through_fields_are_bound():
    class B(nn.Module):
        seq: nn.Module
        bar: nn.Module

        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(self.bar.baz(self.seq.layers[1](self.seq.layers[0](x))))

    model = B(Seq([nn.Dense(3), nn.Dense(4)]), Bar())
    assert shapes(model.init(KEY, X)) == {
        "params": {
            "Dense_0": DENSE(5, 2),
            "bar": {"baz": DENSE(4, 5)},
            "seq": {"layers_0": DENSE(2, 3), "layers_1": DENSE(3, 4)},
        }
    }


def test_nested_field_modules_of_a_bound_module_have_scopes():
    model = Seq([Seq([nn.Dense(3)]), nn.Dense(2)])
    variables = model.init(KEY, X)
    assert shapes(variables)["params"]["layers_0"] == {"layers_0": DENSE(2, 3)}
    bound = model.bind(variables)
    inner = bound.layers[0].layers[0]
    assert inner.scope is not None and inner.path == ("layers_0", "layers_0")
    assert inner(X).shape == (1, 3)


def test_compact_made_modules_passed_on_keep_their_compact_names():
    class D(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = Seq([nn.Dense(2, name="a")])(nn.Dense(3)(x))
            return Seq([nn.Dense(2, parent=None)])(x)

    assert shapes(D().init(KEY, X))["params"] == {
        "Dense_0": DENSE(2, 3),
        "a": DENSE(3, 2),
        "Seq_1": {"layers_0": DENSE(2, 2)},
    }


def test_lifted_module_with_a_module_field():
    class W(nn.Module):
        inner: nn.Module

        def __call__(self, x):
            return self.inner(x)

    class Top(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.remat(W)(nn.Dense(3, parent=None))(x)

    assert shapes(Top().init(KEY, X))["params"] == {"CheckpointW_0": {"inner": DENSE(2, 3)}}


class Coder(nn.Module):
    def setup(self):
        self.enc = nn.Dense(3)

    def encode(self, x):
        return self.enc(x)

    def __call__(self, x):
        return self.encode(x)


def test_apply_with_a_bound_method_and_a_submodule_field_name():
    model = Coder()
    variables = model.init(KEY, X)
    assert model.apply(variables, X, method=model.encode).shape == (1, 3)

    class F(nn.Module):
        enc: nn.Module

        def __call__(self, x):
            return self.enc(x) * 2

    f = F(nn.Dense(3))
    fv = f.init(KEY, X)
    by_field = f.apply(fv, X, method="enc")
    assert jnp.allclose(by_field * 2, f.apply(fv, X))
    with pytest.raises(errors.ApplyModuleInvalidMethodError):
        f.apply(fv, X, method=3)


def test_interceptor_sees_setup_unbound_calls_and_field_modules():
    log = []

    def record(next_fun, args, kwargs, ctx):
        log.append((type(ctx.module).__name__, ctx.method_name, ctx.module.scope is not None))
        return next_fun(*args, **kwargs)

    class Sub(nn.Module):
        def setup(self):
            self.d = nn.Dense(2)

        def __call__(self, x):
            return self.helper(self.d(x))

        def helper(self, x):
            return x * 2

    class Top(nn.Module):
        f: nn.Module

        @nn.compact
        def __call__(self, x):
            return self.f(Sub()(x))

    model = Top(Sub())
    variables = model.init(KEY, X)
    sub = [("Sub", "setup", True), ("Sub", "__call__", True), ("Dense", "__call__", True)]
    sub.append(("Sub", "helper", True))
    with nn.intercept_methods(record):
        model.apply(variables, X)
    assert log == [("Top", "__call__", True), *sub, *sub]  # the list Flax records
    log.clear()
    with nn.intercept_methods(record):
        model.apply(variables, X, method=lambda m, x: m.f.helper(x))
        Sub().helper(1.0)
    assert log == [("Sub", "setup", True), ("Sub", "helper", True), ("Sub", "helper", False)]


def test_module_classes_and_instances_survive_deepcopy_and_cloudpickle():
    def make():
        class Local(nn.Module):
            features: int = 2

            @nn.compact
            def __call__(self, x):
                return nn.Dense(self.features)(x)

        return Local

    cls = make()
    assert copy.deepcopy(cls) is cls
    clone_cls = cloudpickle.loads(cloudpickle.dumps(cls))
    assert shapes(clone_cls(4).init(KEY, X))["params"] == {"Dense_0": DENSE(2, 4)}
    model = cloudpickle.loads(cloudpickle.dumps(cls(3)))
    assert shapes(model.init(KEY, X))["params"] == {"Dense_0": DENSE(2, 3)}
    assert copy.deepcopy(cls(5)) == cls(5)


def test_kw_only_modules_as_in_dataclasses():
    class Base(nn.Module, kw_only=True):
        base: int = -1

    class Child(Base):  # kw_only is not inherited: Child takes its field positionally
        child: int

        def __call__(self, x):
            return x * self.child * self.base

    with pytest.raises(TypeError, match="positional argument"):
        Base(2)
    assert Child(8)(1.0) == -8.0 and Child(8, base=2)(1.0) == 16.0


def test_module_paths_and_copy():
    class M(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = Seq([nn.Dense(2, parent=None)])(nn.Dense(3)(x))
            return nn.Dense(3).copy(features=4)(x)  # the copy is the next Dense: Dense_2

    paths = M().module_paths(KEY, X)
    assert list(paths) == ["", "Dense_0", "Seq_0", "Seq_0/layers_0", "Dense_2"]
    assert all(m.scope is None and m.parent is None and m.name is None for m in paths.values())
    assert paths["Dense_2"].features == 4
    assert list(M().init(KEY, X)["params"]) == ["Dense_0", "Seq_0", "Dense_2"]
    named = nn.Dense(3, name="x").copy(features=5)
    assert named.features == 5 and named.name is None and named.parent is None


def test_unbind_gives_unbound_submodule_fields():
    model = Seq([nn.Dense(3)])
    unbound, variables = model.bind(model.init(KEY, X)).unbind()
    assert unbound.scope is None and unbound.layers[0].scope is None
    assert shapes(unbound.apply(variables, X)) == (1, 3)


def test_method_argument_errors_subclass_what_flax_raises():
    class Foo(nn.Module):
        not_callable: int = 1

        def __call__(self):
            return None

    with pytest.raises(errors.ApplyModuleInvalidMethodError, match="Cannot call apply"):
        Foo().apply({}, method=lambda: True)  # takes no module argument
    with pytest.raises(TypeError, match="'Foo.not_callable' must be a callable"):
        Foo().apply({}, method="not_callable")
    with pytest.raises(AttributeError, match="missing_method"):
        Foo().apply({}, method="missing_method")
    assert isinstance(Foo().apply({}, method=lambda m: m), Foo)


def test_interceptor_context_orig_method_is_bound_to_the_module():
    class Identity(nn.Module):
        def __call__(self, x):
            return x

    module = Identity()
    seen = []

    def add_one(next_fun, args, kwargs, ctx):
        seen.append((ctx.module, ctx.orig_method(3)))
        return next_fun(*args, **kwargs) + 1

    with nn.intercept_methods(add_one):
        assert module(1) == 2
    assert seen == [(module, 3)] and module(1) == 1


def test_init_of_a_bound_submodule_gives_its_own_variables():
    class Baz(nn.Module):
        def setup(self):
            self.b = self.param("b", lambda k: jnp.ones(()))

        def __call__(self, x):
            return x + self.b

    class Bar(nn.Module):
        baz: nn.Module

        def __call__(self, x):
            return self.baz(x)

    class Foo(nn.Module):
        def setup(self):
            self.bar = Bar(baz=Baz())

        def __call__(self, x):
            return self.bar.init_with_output(KEY, x)

    (y, bar_vars), variables = Foo().init_with_output(KEY, X)
    assert shapes(bar_vars) == {"params": {"baz": {"b": ()}}}
    assert "params" not in variables


def test_dir_runs_setup_and_a_module_without_call_says_so():
    class A(nn.Module):
        def setup(self):
            self.d = nn.Dense(2)

        def __call__(self, x):
            return self.d(x)

    bound = A().bind(A().init(KEY, X))
    assert "d" in dir(bound)

    class NoCall(nn.Module):
        pass

    with pytest.raises(AttributeError, match='"NoCall" object has no attribute "__call__"'):
        NoCall().init(KEY)


def test_missing_rng_stream_is_an_invalid_rng_error():
    with pytest.raises(errors.InvalidRngError, match="'params'"):
        nn.Dense(2).init({"other": KEY}, X)


def test_outside_module_held_by_two_modules_is_one_submodule():
    class A(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2, use_bias=False)(x)

    class B(nn.Module):
        a: nn.Module

        @nn.compact
        def __call__(self, x):
            return nn.Dense(2, use_bias=False)(x) + self.a(x)

    class C(nn.Module):
        a: nn.Module
        b: nn.Module

        @nn.compact
        def __call__(self, x):
            return self.b(x) + self.a(x)

    a = A()
    params = C(a, B(a)).init(KEY, X)["params"]  # Flax: b's `a` is c's `a`, stored once
    assert shapes(params) == {
        "a": {"Dense_0": {"kernel": (2, 2)}},
        "b": {"Dense_0": {"kernel": (2, 2)}},
    }


def test_module_shared_in_a_dict_field_is_named_by_its_first_key_in_sorted_order():
    class B(nn.Module):
        a: dict

        @nn.compact
        def __call__(self, x):
            assert list(self.a) == ["foo", "bar"]  # the field keeps its own key order
            return self.a["foo"](x) + self.a["bar"](x)

    shared = nn.Dense(2)
    params = B({"foo": shared, "bar": shared}).init(KEY, X)["params"]
    assert shapes(params) == {"a_bar": DENSE(2, 2)}  # Flax adopts in jax's (sorted) key order


def test_parent_and_name_are_the_last_dataclass_fields_of_every_subclass():
    class Base(nn.Module):
        bar: int

    class Child(Base):
        baz: int
        qux: int = dataclasses.field(default=0, init=False)

    class Grandchild(Child):
        pass

    assert list(Base.__dataclass_fields__) == ["bar", "parent", "name"]
    for cls in (Child, Grandchild):  # as in Flax, whichever class declared them
        assert list(cls.__dataclass_fields__) == ["bar", "baz", "qux", "parent", "name"]
    child = Grandchild(1, 2, name="g")
    assert (child.bar, child.baz, child.name) == (1, 2, "g")
    assert child.clone(baz=5).baz == 5 and child.clone().name == "g"


def test_an_apply_leaves_no_reference_cycle_behind():
    # Flax holds a module's parent weakly, so under jit nothing of a traced init/apply
    # (its modules, scopes, variables) waits for the cycle collector to be freed.
    seen = []

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(2)
            seen.extend(weakref.ref(obj) for obj in (self, self.scope, dense))
            return dense(x)

    model = nn.Sequential([Probe(), Probe()])
    gc.disable()
    try:
        variables = model.init(KEY, X)
        out = model.apply(variables, X)
        bound = model.bind(variables)
        inner = bound.layers[0]
        assert inner.parent is bound  # a live parent is still there
        del bound, inner
    finally:
        gc.enable()
    assert out.shape == (1, 2) and len(seen) == 12
    assert [ref() for ref in seen] == [None] * len(seen)


def test_repr_names_functions_and_lists_the_children_made_so_far():
    # The layout of Flax's module repr, checked against flax 0.12.8's output.
    class Empty(nn.Module):
        pass

    class MLP(nn.Module):
        act: object = nn.relu

        def setup(self):
            self.head = Empty()

        @nn.compact
        def __call__(self, x):
            x = self.act(nn.Dense(2, use_bias=False, kernel_init=nn.initializers.ones)(x))
            return repr(self)

    text = MLP().init_with_output(KEY, X)[0]
    lines = text.split("\n")
    assert lines[:4] == ["MLP(", "    # attributes", "    act = relu", "    # children"]
    assert lines[4:6] == ["    head = Empty()", "    Dense_0 = Dense("]
    assert "        features = 2" in lines and "        kernel_init = ones" in lines
    assert lines[-2:] == ["    )", ")"] and repr(Empty()) == "Empty()"
