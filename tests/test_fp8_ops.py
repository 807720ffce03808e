"""fp8_ops behaviour beyond the goldens: bad fp8 types and Flax's deprecation."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import pytest

import minilinen as nn
from minilinen.errors import Fp8DtypeError, MinilinenError
from minilinen.layers import fp8_ops


@pytest.mark.parametrize("dtype", [jnp.int8, jnp.bfloat16, jnp.float8_e4m3b11fnuz])
def test_quantizing_to_a_type_that_is_not_fp8_names_the_choices(dtype):
    with pytest.raises(Fp8DtypeError, match="float8_e4m3fn, float8_e5m2") as info:
        fp8_ops.qdq(jnp.ones(3), dtype, jnp.ones(1), jnp.float32)
    # Flax asserts here: the error is also an AssertionError (and a ValueError).
    assert all(isinstance(info.value, c) for c in (AssertionError, ValueError, MinilinenError))


def test_a_bad_e4m3_field_fails_at_init_with_the_named_error():
    def op():
        return nn.NANOOFp8DotGeneralOp(e4m3_dtype=jnp.bfloat16)

    with pytest.raises(Fp8DtypeError, match="bfloat16"):
        nn.Dense(3, dot_general_cls=op).init(jax.random.PRNGKey(0), jnp.ones((2, 4)))


def test_only_fp8_dot_general_op_itself_is_deprecated():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nn.NANOOFp8DotGeneralOp()
        nn.Fp8DirectDotGeneralOp()
        nn.Fp8Einsum()
        assert not caught
        nn.Fp8DotGeneralOp()
    assert [w.category for w in caught] == [DeprecationWarning]
    assert "Fp8DirectDotGeneralOp" in str(caught[0].message)


def test_flax_linen_names_are_exported():
    for name in ("Fp8DotGeneral", "Fp8Einsum", "Fp8DotGeneralOp", "Fp8DirectDotGeneralOp"):
        assert getattr(nn, name) is getattr(fp8_ops, name)
    assert nn.NANOOFp8DotGeneralOp.e4m3_dtype == jnp.float8_e4m3fnuz
    assert nn.Fp8DotGeneral is nn.Fp8DirectDotGeneralOp


def test_fp8_einsum_takes_precision_as_flax_does_and_warns_it_is_unused():
    x, w = jnp.ones((2, 3)), jnp.ones((3, 4))
    model = nn.Fp8Einsum()
    variables = model.init(jax.random.PRNGKey(0), "mk,kn->mn", x, w)
    with pytest.warns(UserWarning, match="ignores `precision`"):
        y = model.apply(variables, "mk,kn->mn", x, w, jax.lax.Precision.HIGHEST)
    assert y.shape == (2, 4)
    assert jnp.array_equal(y, model.apply(variables, "mk,kn->mn", x, w))
