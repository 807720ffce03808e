"""Core golden cases, part 2: collections, RNG streams, sow, initializers, methods.

Registered into ``core_case.CASES`` on import (``core_models.py`` imports this).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from golden.core_case import Case, case, data, inits, key, lib

# --- collections -------------------------------------------------------------


def _stateful(nn):
    lb = lib(nn)

    class Stateful(nn.Module):
        @nn.compact
        def __call__(self, x):
            count = self.variable("cache", "count", lambda: jnp.zeros((), jnp.int32))
            last = self.variable("cache", "last", jnp.zeros, x.shape)
            x = lb.RunningMean()(lb.Linear(3)(x))
            if not self.is_initializing():
                count.value = count.value + 1
                last.value = x
            return x

    return Stateful


@case
def collections_batch_stats_and_cache(nn):
    return Case(
        _stateful(nn)(),
        (data(4, 3),),
        key(18),
        apply_kwargs={"mutable": ["batch_stats", "cache"]},
    )


@case
def collections_mutable_true(nn):
    return Case(_stateful(nn)(), (data(4, 3),), key(19), apply_kwargs={"mutable": True})


@case
def collections_mutable_one_name(nn):
    return Case(_stateful(nn)(), (data(4, 3),), key(20), apply_kwargs={"mutable": "cache"})


@case
def collections_mutable_with_absent_names(nn):
    kw = {"mutable": ["never_made", "cache", "params", "batch_stats"]}
    return Case(_stateful(nn)(), (data(4, 3),), key(52), apply_kwargs=kw)


@case
def variable_helpers(nn):
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            had = self.has_variable("counters", "n")
            n = self.variable("counters", "n", lambda: jnp.ones((), jnp.float32))
            if had:
                self.put_variable("counters", "n", n.value * 3.0)
            if not self.has_variable("counters", "seen"):
                self.put_variable("counters", "seen", jnp.sum(x))
            w = self.param("w", inits.normal(1.0), x.shape[-1:])
            return (
                x * w + self.get_variable("counters", "n") + self.get_variable("counters", "seen")
            )

    return Case(Net(), (data(2, 3),), key(21), apply_kwargs={"mutable": ["counters"]})


# --- RNG streams ---------------------------------------------------------------


@case
def rng_streams_dict(nn):
    lb = lib(nn)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = lb.Noisy(stream="dropout")(lb.Linear(6)(x))
            x = lb.Noisy(0.25, stream="noise")(x)
            a = jax.random.uniform(self.make_rng("noise"), x.shape)
            b = jax.random.uniform(self.make_rng("noise"), x.shape)
            return lb.Linear(2)(x + a - b)

    rngs = {"params": key(22), "dropout": key(23), "noise": key(24)}
    apply_kw = {"rngs": {"dropout": key(25), "noise": key(26)}}
    return Case(Net(), (data(3, 4),), rngs, apply_kwargs=apply_kw)


@case
def rng_missing_stream_falls_back_to_params(nn):
    lb = lib(nn)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = lb.Linear(5)(x)
            x = lb.Noisy(0.3)(x) + jax.random.normal(self.make_rng("dropout"), x.shape)
            return lb.Linear(2)(x)

    return Case(Net(), (data(2, 4),), key(27), apply_kwargs={"rngs": {"dropout": key(28)}})


@case
def rng_in_variable_init(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            z = self.variable(
                "noise_state", "z", lambda: jax.random.normal(self.make_rng("noise"), (3,))
            )
            return L(3)(x) + z.value

    return Case(Net(), (data(2, 3),), {"params": key(29), "noise": key(30)})


@case
def rng_params_stream_in_apply(nn):
    """``make_rng('params')`` at apply time draws from the 'params' key given to apply."""
    L = lib(nn).Linear

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return L(3)(x) + jax.random.uniform(self.make_rng("params"), (3,))

    return Case(Net(), (data(2, 3),), key(31), apply_kwargs={"rngs": {"params": key(32)}})


@case
def rng_has_rng_and_is_initializing(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            names = ("params", "dropout", "noise")
            flags = [self.has_rng(n) for n in names] + [self.is_initializing()]
            return L(2)(x), jnp.array(flags)

    return Case(Net(), (data(2, 3),), key(53), apply_kwargs={"rngs": {"noise": key(54)}})


# --- sow and captured intermediates ------------------------------------------------


@case
def sow_intermediates(nn):
    L = lib(nn).Linear

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = L(4)(x)
            self.sow("intermediates", "h", h)
            h = jnp.tanh(h)
            self.sow("intermediates", "h", h)
            return L(2)(h)

    return Case(Net(), (data(2, 3),), key(33), apply_kwargs={"mutable": ["intermediates"]})


@case
def sow_custom_reduce_init_mutable_true(nn):
    lb = lib(nn)

    class Inner(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = lb.Linear(3)(x)
            self.sow(
                "stats", "total", jnp.sum(y), reduce_fn=lambda a, b: a + b, init_fn=lambda: 0.0
            )
            return y

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = Inner()(x)
            y = Inner()(y) + Inner(name="again")(x)
            self.sow("intermediates", "out", y)
            return y

    return Case(
        Net(),
        (data(2, 3),),
        key(34),
        init_kwargs={"mutable": True},
        apply_kwargs={"mutable": ["stats", "intermediates"]},
    )


@case
def capture_intermediates_all(nn):
    lb = lib(nn)

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            return lb.Scale()(jax.nn.relu(lb.Linear(4)(x)))

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return lb.Linear(2)(Block()(Block()(x)))

    return Case(
        Net(),
        (data(3, 4),),
        key(35),
        apply_kwargs={"capture_intermediates": True, "mutable": ["intermediates"]},
    )


@case
def capture_intermediates_filter(nn):
    lb = lib(nn)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return lb.Scale()(lb.Linear(3)(lb.Scale()(lb.Linear(3)(x))))

    def only_linear(mdl, method_name):
        return type(mdl).__name__ == "Linear" and method_name == "__call__"

    return Case(Net(), (data(2, 3),), key(36), apply_kwargs={"capture_intermediates": only_linear})


# --- initializers ------------------------------------------------------------------


@case
def zero_initializers_consume_rng(nn):
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            a = self.param("a", inits.zeros, (3,))
            b = self.param("b", inits.normal(1.0), (3,))
            c = self.param("c", inits.ones, (3,))
            d = self.param("d", lambda rng, shape: jnp.zeros(shape), (3,))
            e = self.param("e", inits.uniform(2.0), (3,))
            return x * b + e + a + c + d

    return Case(Net(), (data(2, 3),), key(37))


@case
def custom_init_extra_args(nn):
    def shifted_normal(rng, shape, scale, offset, dtype=jnp.float32):
        return scale * jax.random.normal(rng, shape, dtype) + offset

    class Net(nn.Module):
        scale: float = 0.3

        @nn.compact
        def __call__(self, x):
            w = self.param("w", shifted_normal, (x.shape[-1], 2), self.scale, 1.0)
            b = self.param("b", shifted_normal, (2,), 0.1, -1.0)
            i = self.param("i", lambda rng, n: jax.random.randint(rng, (n,), 0, 100), 4)
            return x @ w + b, i

    return Case(Net(), (data(3, 4),), key(38))


@case
def param_dtypes(nn):
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = self.param("h", inits.normal(1.0, jnp.float16), (3,))
            u = self.param("u", inits.uniform(1.0, jnp.float32), (2, 3))
            return (x @ u.T).astype(jnp.float16) + h[:2]

    return Case(Net(), (data(4, 3),), key(39))


# --- methods -----------------------------------------------------------------------


def _autoencoder(nn):
    L = lib(nn).Linear

    class AutoEncoder(nn.Module):
        latent: int = 2

        def setup(self):
            self.encoder = L(self.latent)
            self.decoder = L(4)

        def encode(self, x):
            return jnp.tanh(self.encoder(x))

        def decode(self, z):
            return self.decoder(z)

        def __call__(self, x):
            return self.decode(self.encode(x))

    return AutoEncoder


@case
def method_as_function(nn):
    ae = _autoencoder(nn)
    return Case(ae(), (data(3, 4),), key(40), apply_kwargs={"method": ae.encode})


@case
def method_as_string(nn):
    return Case(
        _autoencoder(nn)(),
        (data(3, 4),),
        key(41),
        apply_kwargs={"method": "decode"},
        apply_args=(data(3, 2, phase=1.0),),
    )


@case
def method_as_lambda(nn):
    return Case(
        _autoencoder(nn)(),
        (data(3, 4),),
        key(42),
        apply_kwargs={"method": lambda m, x: 2.0 * m.decode(m.encode(x))},
    )


@case
def init_with_method(nn):
    ae = _autoencoder(nn)
    return Case(
        ae(latent=3),
        (data(3, 4),),
        key(43),
        init_kwargs={"method": "encode"},
        apply_kwargs={"method": ae.encode},
    )


# --- dict of rngs, self.variables and self.path ------------------------------------------


@case
def init_with_dict_of_rngs(nn):
    lb = lib(nn)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = True):
            x = lb.Linear(4)(x)
            if train:
                x = lb.Noisy(0.5)(x)
            return lb.Linear(2)(x)

    return Case(
        Net(),
        (data(2, 3),),
        {"params": key(44), "dropout": key(45)},
        apply_kwargs={"train": False},
    )


@case
def reads_variables_and_path(nn):
    L = lib(nn).Linear

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = L(3)(x)
            self.param("offset", inits.normal(1.0), (3,))
            total = sum(jnp.sum(v) for v in jax.tree_util.tree_leaves(self.variables))
            path = jnp.array([ord(c) for c in "/".join(self.path)], jnp.int32)
            return y + total, path

    class Net(nn.Module):
        def setup(self):
            self.probe = Probe()

        @nn.compact
        def __call__(self, x):
            a, pa = self.probe(x)
            b, pb = Probe(name="second")(a)
            return b, pa, pb

    return Case(Net(), (data(2, 3),), key(46))


# --- the library's own Dense (layers issue) -------------------------------------------


@case
def dense_compact_mlp(nn):
    class SimpleMLP(nn.Module):
        features: tuple = (3, 4, 5)

        @nn.compact
        def __call__(self, x):
            for i, feat in enumerate(self.features):
                x = nn.Dense(feat, name=f"layers_{i}")(x)
                if i != len(self.features) - 1:
                    x = nn.relu(x)
            return x

    return Case(SimpleMLP(), (data(4, 4),), key(47))


@case
def dense_setup_autonamed(nn):
    class Net(nn.Module):
        def setup(self):
            self.layers = [nn.Dense(4), nn.Dense(3, use_bias=False)]

        @nn.compact
        def __call__(self, x):
            for layer in self.layers:
                x = nn.relu(layer(x))
            return nn.Dense(2)(x)

    return Case(Net(), (data(2, 5),), key(48))
