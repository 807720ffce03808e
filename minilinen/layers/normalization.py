"""Normalization: BatchNorm, LayerNorm, RMSNorm, GroupNorm, InstanceNorm, Weight/SpectralNorm."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from minilinen import initializers
from minilinen.errors import LayerConfigError, LayerInputError
from minilinen.layers.common import canonicalize_dtype, merge_param
from minilinen.module import Module, compact
from minilinen.typing import Array, Dtype, Initializer

__all__ = [
    "BatchNorm",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "InstanceNorm",
    "WeightNorm",
    "SpectralNorm",
]

Axes = int | Iterable[int]

_float32 = jnp.dtype(jnp.float32)


def _canonical_axes(ndim: int, axes: Axes) -> tuple[int, ...]:
    if not isinstance(axes, Iterable):
        axes = (axes,)
    return tuple(sorted({a + ndim if a < 0 else a for a in axes}))


def _square(x: Array) -> Array:
    if jnp.iscomplexobj(x):
        return lax.square(lax.real(x)) + lax.square(lax.imag(x))
    return lax.square(x)


def _stats(
    mdl: Module,
    x: Array,
    axes: Axes,
    mask: Array | None = None,
    use_mean: bool = True,
    cross_device: bool = True,
) -> tuple[Array, Array]:
    """Mean and variance of ``x`` over ``axes``, averaged across the layer's ``axis_name``.

    The layer's own fields (dtype, axis_name, axis_index_groups, use_fast_variance,
    force_float32_reductions) configure it; ``cross_device=False`` skips the average.
    """
    axis_name = mdl.axis_name if cross_device else None
    dtype = x.dtype if mdl.dtype is None else jnp.dtype(mdl.dtype)
    if mdl.force_float32_reductions:
        dtype = jnp.promote_types(dtype, _float32)
    if not isinstance(x, jax.Array) or x.dtype != dtype:
        x = jnp.asarray(x, dtype)
    axes = _canonical_axes(x.ndim, axes)
    if mask is not None:
        mask = jnp.asarray(mask, dtype=bool)

    def means(*xs: Array) -> list[Array]:
        mus = [v.mean(axes, where=mask) for v in xs]
        if axis_name is None:
            return mus
        # One collective for all the moments: fewer cross-device round trips.
        return list(lax.pmean(jnp.stack(mus), axis_name, axis_index_groups=mdl.axis_index_groups))

    if not use_mean:
        (var,) = means(_square(x))
        return jnp.zeros_like(var), var
    if mdl.use_fast_variance:
        # E[x^2] - E[x]^2: both reductions read x side by side (PERF_NOTES: ~35%
        # faster on XLA:CPU than reducing x - mean after a first pass).
        mu, mu2 = means(x, _square(x))
        return mu, jnp.maximum(0.0, mu2 - _square(mu))
    (mu,) = means(x)
    (var,) = means(_square(x - jnp.expand_dims(mu, axes)))
    return mu, var


def _normalize(
    mdl: Module, x: Array, mean: Array, var: Array, reduction_axes: Axes, feature_axes: Axes
) -> Array:
    """``(x - mean) * (rsqrt(var + eps) * scale) + bias``, creating scale and bias.

    The layer's own fields (dtype, param_dtype, epsilon, use_scale, use_bias, scale_init,
    bias_init, force_float32_reductions) configure it.
    """
    reduction_axes = _canonical_axes(x.ndim, reduction_axes)
    feature_axes = _canonical_axes(x.ndim, feature_axes)
    feature_shape = [x.shape[a] if a in feature_axes else 1 for a in range(x.ndim)]
    # A tuple (hashable) lets the scope cache the parameter's abstract shape.
    param_shape = tuple(x.shape[a] for a in feature_axes)

    def feature_param(name: str, init: Initializer) -> Array:
        p = mdl.param(name, init, param_shape, mdl.param_dtype).reshape(feature_shape)
        return p if mdl.force_float32_reductions else jnp.asarray(p, mdl.param_dtype)

    y = x - jnp.expand_dims(mean, reduction_axes)
    # The scale folds into the per-feature factor, so the full-size work is one
    # subtract, one multiply and one add.
    mul = lax.rsqrt(jnp.expand_dims(var, reduction_axes) + mdl.epsilon)
    args = [x]
    if mdl.use_scale:
        args.append(feature_param("scale", mdl.scale_init))
        mul = mul * args[-1]
    y = y * mul
    if getattr(mdl, "use_bias", False):  # RMSNorm has no use_bias field: it adds no bias
        args.append(feature_param("bias", mdl.bias_init))
        y = y + args[-1]
    dtype = canonicalize_dtype(*args, dtype=mdl.dtype)
    return y if y.dtype == dtype else jnp.asarray(y, dtype)


class BatchNorm(Module):
    """Normalizes over the batch, keeping running averages in ``batch_stats``."""

    use_running_average: bool | None = None
    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Initializer = initializers.zeros
    scale_init: Initializer = initializers.ones
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(
        self, x: Array, use_running_average: bool | None = None, *, mask: Array | None = None
    ) -> Array:
        """Normalizes ``x`` with batch statistics (training) or the running averages."""
        use_running_average = merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        feature_axes = _canonical_axes(x.ndim, self.axis)
        reduction_axes = tuple(i for i in range(x.ndim) if i not in feature_axes)
        feature_shape = tuple(x.shape[a] for a in feature_axes)
        stats_dtype = _float32 if self.force_float32_reductions else self.param_dtype
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, feature_shape, stats_dtype)
        ra_var = self.variable("batch_stats", "var", jnp.ones, feature_shape, stats_dtype)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
            if not self.force_float32_reductions:
                mean, var = jnp.asarray(mean, self.param_dtype), jnp.asarray(var, self.param_dtype)
        else:
            initializing = self.is_initializing()
            # At init there is no mapped axis to average over yet.
            mean, var = _stats(self, x, reduction_axes, mask, cross_device=not initializing)
            if not initializing:
                m = self.momentum
                ra_mean.value = m * ra_mean.value + (1 - m) * mean
                ra_var.value = m * ra_var.value + (1 - m) * var
        return _normalize(self, x, mean, var, reduction_axes, feature_axes)


class LayerNorm(Module):
    """Normalizes each example over ``reduction_axes`` (the last axis by default)."""

    epsilon: float = 1e-6
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Initializer = initializers.zeros
    scale_init: Initializer = initializers.ones
    reduction_axes: Axes = -1
    feature_axes: Axes = -1
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes ``x``."""
        mean, var = _stats(self, x, self.reduction_axes, mask)
        return _normalize(self, x, mean, var, self.reduction_axes, self.feature_axes)


class RMSNorm(Module):
    """Divides by the root mean square over ``reduction_axes`` (no centering, no bias)."""

    epsilon: float = 1e-6
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_scale: bool = True
    scale_init: Initializer = initializers.ones
    reduction_axes: Axes = -1
    feature_axes: Axes = -1
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes ``x``."""
        mean, var = _stats(self, x, self.reduction_axes, mask, use_mean=False)
        return _normalize(self, x, mean, var, self.reduction_axes, self.feature_axes)


class GroupNorm(Module):
    """Normalizes each example over groups of channels (and the spatial axes)."""

    num_groups: int | None = 32
    group_size: int | None = None
    epsilon: float = 1e-6
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Initializer = initializers.zeros
    scale_init: Initializer = initializers.ones
    reduction_axes: Axes | None = None
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes ``x`` shaped ``(batch, *spatial, channels)``."""
        # By default, the spatial axes and the channels.
        axes = [*range(1, x.ndim - 1), -1] if self.reduction_axes is None else self.reduction_axes
        reduction_axes = _canonical_axes(x.ndim, axes)
        if reduction_axes[-1] != x.ndim - 1:
            raise LayerConfigError(
                f"GroupNorm reduction_axes {self.reduction_axes} must include the last axis "
                f"(the channels)."
            )
        if (self.num_groups is None) == (self.group_size is None):
            raise LayerConfigError(
                "GroupNorm needs exactly one of num_groups and group_size; to give "
                "group_size, also pass num_groups=None (its default is 32)."
            )
        channels, num_groups = x.shape[-1], self.num_groups
        if self.group_size is not None:
            if channels % self.group_size:
                raise LayerConfigError(
                    f"GroupNorm: {channels} channels are not a multiple of group_size "
                    f"{self.group_size}."
                )
            num_groups = channels // self.group_size
        if num_groups <= 0 or channels % num_groups:
            raise LayerConfigError(
                f"GroupNorm: num_groups {num_groups} does not divide the {channels} channels."
            )
        group_size = channels // num_groups
        grouped = x.shape[:-1] + (num_groups, group_size)
        if mask is not None:
            mask = mask.reshape(mask.shape[:-1] + (num_groups, group_size))
        stats = _stats(self, x.reshape(grouped), list(reduction_axes[:-1]) + [-1], mask)
        # One mean and variance per group, repeated for each of its channels.
        mean, var = (jnp.repeat(s, group_size, axis=-1) for s in stats)
        return _normalize(self, x, mean, var, reduction_axes[:-1], (-1,))


class InstanceNorm(Module):
    """Normalizes each example and channel over the remaining (spatial) axes."""

    epsilon: float = 1e-6
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Initializer = initializers.zeros
    scale_init: Initializer = initializers.ones
    feature_axes: Axes = -1
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes ``x`` shaped ``(batch, *spatial, *features)``."""
        feature_axes = _canonical_axes(x.ndim, self.feature_axes)
        if 0 in feature_axes:
            raise LayerConfigError(
                "The channel axes cannot include the leading dimension as this is assumed to "
                "be the batch axis (InstanceNorm feature_axes includes axis 0)."
            )
        reduction_axes = [i for i in range(1, x.ndim) if i not in feature_axes]
        mean, var = _stats(self, x, reduction_axes, mask)
        return _normalize(self, x, mean, var, reduction_axes, feature_axes)


def _l2_normalize(x: Array, axis: Axes | None = None, eps: float = 1e-12) -> Array:
    return x * lax.rsqrt((x * x).sum(axis=axis, keepdims=True) + eps)


class _Reparametrized(Module):
    """Runs ``layer_instance`` seeing each of its variables through ``self._map``.

    Flax builds these on ``nn.map_variables``: the one lifted transform a layer uses, so
    it is imported when called rather than at import (transforms sit above layers).
    """

    def _call_mapped(self, args: tuple, kwargs: dict, mutable: bool, **map_kwargs: Any) -> Any:
        from minilinen.transforms import map_variables

        def map_one(path: tuple, v: Array) -> Array:
            # Named by its path below its collection, under the wrapped layer's name.
            keys = jax.tree_util.keystr(path[1:], simple=True, separator="/")
            return self._map(f"{self.layer_instance.name}/{keys}", v, **map_kwargs)

        body = map_variables(
            lambda layer: layer(*args, **kwargs),
            trans_in_fn=lambda vs: jax.tree_util.tree_map_with_path(map_one, vs),
            init=self.is_initializing(),
            mutable=mutable,
        )
        return body(self.layer_instance)


class WeightNorm(_Reparametrized):
    """Reparametrizes the wrapped layer's kernels as ``scale * v / ||v||`` (Salimans 2016)."""

    layer_instance: Module
    epsilon: float = 1e-12
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_scale: bool = True
    scale_init: Initializer = initializers.ones
    feature_axes: Axes | None = -1
    variable_filter: Iterable | None = dataclasses.field(default_factory=lambda: {"kernel"})

    @compact
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the wrapped layer with its filtered variables weight-normalized."""
        return self._call_mapped(args, kwargs, mutable=False)

    def _map(self, name: str, vs: Array) -> Array:
        value = jnp.asarray(vs)
        # Flax matches the filter as substrings of the variable's path.
        if self.variable_filter and not any(f in name for f in self.variable_filter):
            return value
        axes = () if self.feature_axes is None else self.feature_axes  # None: one scale
        feature_axes = _canonical_axes(value.ndim, axes)
        reduction_axes = tuple(i for i in range(value.ndim) if i not in feature_axes)
        value_bar = _l2_normalize(value, axis=reduction_axes, eps=self.epsilon)
        args = [vs]
        if self.use_scale:
            shape = tuple(value.shape[a] for a in feature_axes)
            scale = self.param(name + "/scale", self.scale_init, shape, self.param_dtype)
            value_bar = value_bar * jnp.expand_dims(scale, reduction_axes)
            args.append(scale)
        return jnp.asarray(value_bar, canonicalize_dtype(*args, dtype=self.dtype))


class SpectralNorm(_Reparametrized):
    """Divides the wrapped layer's matrices by their largest singular value (power iteration).

    The power-iteration vector ``u`` and the estimate ``sigma`` live in ``collection_name``;
    ``update_stats=True`` (with that collection mutable) advances them.
    """

    layer_instance: Module
    n_steps: int = 1
    epsilon: float = 1e-12
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    error_on_non_matrix: bool = False
    collection_name: str = "batch_stats"

    @compact
    def __call__(self, *args: Any, update_stats: bool, **kwargs: Any) -> Any:
        """Calls the wrapped layer with each kernel of rank >= 2 spectrally normalized."""
        return self._call_mapped(args, kwargs, mutable=True, update_stats=update_stats)

    def _map(self, name: str, vs: Array, update_stats: bool) -> Array:
        value = jnp.asarray(vs)
        shape, col = value.shape, self.collection_name
        if value.ndim <= 1 or self.n_steps < 1:
            return value
        if value.ndim > 2:
            if self.error_on_non_matrix:
                raise LayerInputError(
                    f"Input is {value.ndim}D but error_on_non_matrix is True (SpectralNorm of "
                    f"'{name}'); pass error_on_non_matrix=False to flatten it to 2D."
                )
            value = jnp.reshape(value, (-1, value.shape[-1]))
        # Drawn only when creating u, as Flax does, so later keys stay identical.
        key = None if self.has_variable(col, name + "/u") else self.make_rng("params")
        u_var = self.variable(
            col, name + "/u", jax.random.normal, key, (1, value.shape[-1]), self.param_dtype
        )
        sigma_var = self.variable(col, name + "/sigma", jnp.ones, (), self.param_dtype)
        u0 = u_var.value
        for _ in range(self.n_steps):
            v0 = _l2_normalize(jnp.matmul(u0, value.transpose([1, 0])), eps=self.epsilon)
            u0 = _l2_normalize(jnp.matmul(v0, value), eps=self.epsilon)
        u0, v0 = lax.stop_gradient(u0), lax.stop_gradient(v0)
        sigma = jnp.matmul(jnp.matmul(v0, value), jnp.transpose(u0))[0, 0]
        value = (value / jnp.where(sigma != 0, sigma, 1)).reshape(shape)
        if update_stats:
            u_var.value = u0
            sigma_var.value = sigma
        return jnp.asarray(value, canonicalize_dtype(vs, u0, v0, sigma, dtype=self.dtype))
