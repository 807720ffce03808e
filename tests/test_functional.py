"""Functional forms (nn.init / nn.init_with_output / nn.apply), Module.lazy_init and
merge_param where Flax has them (values against Flax: test_api_golden.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minilinen as nn
from minilinen import errors, module


class Noisy(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        return nn.Dropout(0.5, deterministic=not train)(nn.Dense(4)(x))


def twice(model, x, train):
    return model(model(x, train)[..., :3], train)


def test_functional_forms_are_jittable_and_take_rngs():
    x = jnp.ones((2, 3))
    variables = jax.jit(nn.init(twice, Noisy()), static_argnums=2)(jax.random.PRNGKey(0), x, False)
    assert set(variables["params"]) == {"Dense_0"}  # one Dense reached twice
    run = jax.jit(nn.apply(twice, Noisy()), static_argnames="train")
    a = run(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    b = run(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert a.shape == (2, 4) and not np.array_equal(a, b)
    y, same = nn.init_with_output(twice, Noisy())(jax.random.PRNGKey(0), x, False)
    np.testing.assert_array_equal(y, run(variables, x, train=False))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, same, variables))


def test_lazy_init_needs_only_shapes_and_refuses_values_it_lacks():
    shape = jax.ShapeDtypeStruct((2, 3), jnp.float32)
    lazy = Noisy().lazy_init(jax.random.PRNGKey(0), shape, False)
    eager = Noisy().init(jax.random.PRNGKey(0), jnp.zeros((2, 3)), False)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, lazy, eager))

    class FromInput(nn.Module):
        @nn.compact
        def __call__(self, x):
            return self.param("copy", lambda _: x)

    with pytest.raises(errors.LazyInitError, match="ShapeDtypeStruct") as info:
        FromInput().lazy_init(jax.random.PRNGKey(0), shape)
    assert isinstance(info.value, ValueError)


def test_merge_param_lives_in_module_as_in_flax():
    assert module.merge_param is nn.merge_param
    assert module.merge_param("train", None, True) is True
    with pytest.raises(errors.MergeParamError, match="both"):
        module.merge_param("train", False, True)
    with pytest.raises(ValueError, match="neither"):
        module.merge_param("train", None, None)
