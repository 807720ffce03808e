"""init skips the key fold for zeros/ones parameters without moving any later key."""

import jax
import jax.numpy as jnp
import numpy as np

import minilinen as nn


def _model(first_init):
    class M(nn.Module):
        @nn.compact
        def __call__(self, x):
            b = self.param("b", first_init, (3,))
            w = self.param("w", nn.initializers.normal(1.0), (3,))
            return x * w + b + self.make_rng("params")[None].shape[0]

    return M()


def test_keyless_param_still_counts_its_draw():
    x = jnp.ones((3,))
    key = jax.random.key(0)
    for keyless, keyed in (
        (jax.nn.initializers.zeros, lambda k, s: jnp.zeros(s) + 0 * jax.random.normal(k, s)),
        (jax.nn.initializers.ones, lambda k, s: jnp.ones(s) + 0 * jax.random.normal(k, s)),
    ):
        fast = _model(keyless).init(key, x)["params"]
        slow = _model(keyed).init(key, x)["params"]
        np.testing.assert_array_equal(fast["b"], slow["b"])
        # 'w' is drawn after 'b' in the same scope: the same key either way.
        np.testing.assert_array_equal(fast["w"], slow["w"])


def test_keyless_param_under_jit_init():
    x = jnp.ones((3,))
    key = jax.random.key(1)
    eager = _model(jax.nn.initializers.zeros).init(key, x)["params"]
    jitted = jax.jit(_model(jax.nn.initializers.zeros).init)(key, x)["params"]
    np.testing.assert_array_equal(eager["w"], jitted["w"])
    np.testing.assert_array_equal(eager["b"], np.zeros(3, np.float32))
