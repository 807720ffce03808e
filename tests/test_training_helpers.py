"""Training helpers beyond TrainState (values against Flax: test_api_golden.py, the
pmap helpers there on 4 simulated devices)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minilinen import errors, jax_utils
from minilinen.training import common_utils, dynamic_scale, early_stopping


def test_pad_shard_unpad_refuses_mismatched_batches():
    run = jax_utils.pad_shard_unpad(lambda x, y: x + y, static_argnums=())
    # Flax asserts here; the named error is also an AssertionError.
    with pytest.raises(AssertionError, match=r"batch sizes \[3, 4\] differ") as info:
        run(np.ones((3, 2)), np.ones((4, 2)))
    assert isinstance(info.value, errors.MinilinenError)


def test_partial_eval_by_shape_returns_shapes_only_for_what_the_inputs_decide():
    lazy = jax_utils.partial_eval_by_shape(lambda x, w: (x.sum(), w * 2), [(3,)], jnp.ones(2))
    assert lazy[0] == jax.ShapeDtypeStruct((), jnp.float32)
    np.testing.assert_array_equal(lazy[1], np.full(2, 2.0, np.float32), strict=True)


def test_pmean_is_deprecated_for_lax_pmean():
    with pytest.warns(DeprecationWarning, match="jax.lax.pmean"):
        out = jax.pmap(lambda x: jax_utils.pmean(x, "i"), axis_name="i")(jnp.ones((1, 2)))
    np.testing.assert_array_equal(out, np.ones((1, 2)))


def test_helpers_compose_in_a_pmap_step():
    ds = dynamic_scale.DynamicScale()
    state = jax_utils.replicate({"w": jnp.ones(3), "ds": ds})
    batch = common_utils.shard(jnp.arange(6.0 * jax.local_device_count()).reshape(-1, 3))

    def step(state, x):
        grad_fn = state["ds"].value_and_grad(lambda w: jnp.sum(w * x))
        new_ds, finite, loss, grad = grad_fn(state["w"])
        return {"w": state["w"] - 0.1 * grad, "ds": new_ds}, loss

    state, loss = jax.pmap(step)(state, batch)
    out = jax_utils.unreplicate(state)
    np.testing.assert_allclose(out["w"], 1 - 0.1 * batch[0].sum(0), rtol=1e-6)
    assert int(out["ds"].fin_steps) == 1 and float(out["ds"].scale) == 65536.0
    stop = early_stopping.EarlyStopping(patience=1).update(float(loss[0])).update(1e9)
    assert stop.should_stop is False and stop.update(1e9).should_stop is True
