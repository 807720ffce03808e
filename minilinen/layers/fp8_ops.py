"""FP8 matrix products with delayed scaling, as ``flax.linen.fp8_ops``.

A dot in fp8 keeps, per operand, a scale and a history of recent absolute maxima.
Each step quantizes with a scale computed from the history, then records the
operand's new maximum. The module classes keep these values in the
``'_overwrite_with_gradient'`` collection, and the custom VJPs below hand back the
*updated* scale and history as those variables' "gradients", so a training step
(``TrainState.apply_gradients``) overwrites them with their new values.
"""

import dataclasses
import warnings
from functools import partial, wraps
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax._src import core, dtypes, earray  # extended dtypes have no public API yet
from jax._src.interpreters import pxla

from minilinen.errors import Fp8DtypeError
from minilinen.module import Module

# What flax.linen exports; the functions are reached as fp8_ops.<name>, as in Flax.
__all__ = ["Fp8DotGeneral", "Fp8DotGeneralOp", "Fp8DirectDotGeneralOp", "Fp8Einsum"]
__all__ += ["NANOOFp8DotGeneralOp"]

OVERWRITE_WITH_GRADIENT = "_overwrite_with_gradient"  # TrainState imports it from here
CAN_USE_EARRAY = True  # the earray import above succeeded
_cast = lax.convert_element_type
_FP8_TYPES = (jnp.float8_e4m3fn, jnp.float8_e5m2, jnp.float8_e4m3fnuz, jnp.float8_e5m2fnuz)


class fp8_meta_dtype(dtypes.extended):  # noqa: N801  (Flax's name; for jnp.issubdtype)
    """The scalar type of :data:`fm32` values."""


@dataclasses.dataclass(frozen=True)
class fp8_meta_dtype_wrapper(dtypes.ExtendedDType):  # noqa: N801  (Flax's name)
    """A ``float_dtype`` whose cotangents accumulate by max, not sum (JAX's extended dtype).

    A scale or history used several times (e.g. in a scan) then gets its newest value
    back as its gradient. The class is its own rule set: JAX calls
    ``dtype._rules.<rule>(dtype, ...)``, so most rules are plain methods.
    """

    float_dtype: Any
    type: type = fp8_meta_dtype
    allow_conversion = True  # to and from float_dtype; JAX refuses other types itself

    def __repr__(self) -> str:
        return f"fp8_meta{jnp.finfo(self.float_dtype).bits}"

    name = property(__repr__)

    def physical_element_aval(self) -> core.ShapedArray:
        return core.ShapedArray((), self.float_dtype)

    def tangent_dtype(self) -> Any:
        return self

    def add(self, x: Any, y: Any) -> Any:
        return _cast(lax.max(_cast(x, self.float_dtype), _cast(y, self.float_dtype)), self)

    def zero(self) -> Any:  # max's identity (float_dtype is float32: it has -inf)
        return _cast(np.array(-np.inf, self.float_dtype), self)

    @staticmethod
    def full(shape: Any, fill_value: Any, dtype: Any) -> Any:
        return _cast(lax.full(shape, fill_value, dtype.float_dtype), dtype)

    @staticmethod
    def global_sharded_result_handler(aval: Any, out_sharding: Any, committed: bool) -> Any:
        physical = pxla.global_result_handlers[core.ShapedArray]
        handler = physical(core.physical_aval(aval), out_sharding, committed)
        return lambda bufs: earray.EArray(aval, handler(bufs))


fp8_meta_dtype_wrapper._rules = Fp8MetaTyRules = fp8_meta_dtype_wrapper
fm32 = fp32_max_grad = fp8_meta_dtype_wrapper(jnp.float32)


def _as_float(x: Any) -> Any:
    return _cast(x, jnp.float32) if x.dtype == fm32 else x


def get_fp8_max(fp8_dtype: Any, out_dtype: Any) -> Any:
    """The largest finite value of ``fp8_dtype``, as ``out_dtype``."""
    if fp8_dtype not in _FP8_TYPES:
        names = ", ".join(jnp.dtype(t).name for t in _FP8_TYPES)
        raise Fp8DtypeError(f"fp8 quantization needs one of {names}; got {fp8_dtype}.")
    return jnp.finfo(fp8_dtype).max.astype(out_dtype)


def quantize(x: Any, q_dtype: Any, scale: Any, compute_dtype: Any) -> Any:
    """``x / scale`` clipped to ``q_dtype``'s range and cast to it."""
    dtype_max = get_fp8_max(q_dtype, compute_dtype)  # in compute_dtype: no float32 detour
    scaled = x / jnp.broadcast_to(scale.astype(compute_dtype), x.shape)
    return jnp.clip(scaled, -dtype_max, dtype_max).astype(q_dtype)


def dequantize(x: Any, dq_dtype: Any, scale: Any) -> Any:
    """``x * scale`` in ``dq_dtype``."""
    return x.astype(dq_dtype) * jnp.broadcast_to(scale.astype(dq_dtype), x.shape)


def qdq(x: Any, q_dtype: Any, scale: Any, compute_dtype: Any) -> Any:
    """``x`` rounded through ``q_dtype`` and back to its own dtype."""
    return dequantize(quantize(x, q_dtype, scale, compute_dtype), x.dtype, scale)


def compute_scale(amax: Any, scale: Any, fp8_max: Any, margin: int = 0) -> Any:
    """The scale mapping ``amax`` onto ``fp8_max`` (the old one while amax is 0 or inf)."""
    # Written on reciprocals as NVIDIA's Transformer Engine does, so the rounding matches.
    new = (fp8_max / amax) / (2**margin)
    return 1.0 / jnp.where((amax > 0.0) & jnp.isfinite(amax), new, 1.0 / scale)


def compute_amax_history(x: Any, amax_history: Any) -> Any:
    """The history rolled by one, with ``max(|x|)`` at its front."""
    amax = jnp.max(jnp.abs(x)).astype(amax_history.dtype)
    return jnp.roll(amax_history, shift=-1, axis=0).at[0].set(amax)


def update_fp8_meta(x: Any, q_dtype: Any, scale: Any, amax_history: Any) -> tuple[Any, Any]:
    """(the scale for this step, the history with ``x``'s maximum recorded)."""
    meta = scale.dtype == fm32 and amax_history.dtype == fm32  # then so are the results
    scale, history = (_cast(v, jnp.float32) if meta else v for v in (scale, amax_history))
    fp8_max = get_fp8_max(q_dtype, jnp.float32)
    new = compute_scale(jnp.max(history, axis=0), scale, fp8_max), compute_amax_history(x, history)
    return tuple(_cast(v, fm32) for v in new) if meta else new


def quantize_dequantize_update(x, q_dtype, scale, amax_history, compute_dtype) -> tuple:
    """(``qdq`` of ``x`` with the updated scale, that scale, the updated history)."""
    new_scale, new_history = update_fp8_meta(x, q_dtype, scale, amax_history)
    return qdq(x, q_dtype, _as_float(new_scale), compute_dtype), new_scale, new_history


def _custom_vjp(fwd, bwd, nondiff_argnums: tuple[int, ...]):
    """A ``jax.custom_vjp`` valued ``fwd(...)[0]``. It takes ``fwd``'s signature (and
    docstring): custom_vjp reads the signature to place keyword arguments."""
    rule = jax.custom_vjp(wraps(fwd)(lambda *args: fwd(*args)[0]), nondiff_argnums)
    rule.defvjp(fwd, bwd)
    return rule


def _in_qdq_fwd(compute_dtype, q_dtype, inp, scale, amax_history):
    """``inp`` through fp8; its cotangent passes straight, the meta's are their updates."""
    qin, *new_meta = quantize_dequantize_update(inp, q_dtype, scale, amax_history, compute_dtype)
    return qin, new_meta


def _out_qdq_fwd(compute_dtype, q_dtype, out, scale, amax_history):
    """``out`` unchanged; its cotangent goes through fp8, the meta's are their updates."""
    return out, (scale, amax_history)


def _out_qdq_bwd(compute_dtype, q_dtype, meta, g):
    return quantize_dequantize_update(g, q_dtype, *meta, compute_dtype)


in_qdq = _custom_vjp(_in_qdq_fwd, lambda c, q, new_meta, g: (g, *new_meta), (0, 1))
out_qdq = _custom_vjp(_out_qdq_fwd, _out_qdq_bwd, (0, 1))


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def dot_general_with_precision(
    lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None
):
    """``lax.dot_general`` at DEFAULT precision, its derivatives at HIGHEST."""
    if precision is not None or preferred_element_type is not None:
        warnings.warn("dot_general_with_precision ignores precision/preferred.", stacklevel=2)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=lax.Precision.DEFAULT)


@dot_general_with_precision.defjvp
def _dot_general_with_precision_jvp(dims, precision, preferred, primals, tangents):
    (lhs, rhs), (lhs_dot, rhs_dot) = primals, tangents
    dot = partial(lax.dot_general, dimension_numbers=dims, precision=lax.Precision.HIGHEST)
    out = lax.dot_general(lhs, rhs, dims, precision=lax.Precision.DEFAULT)
    return out, dot(lhs_dot, rhs) + dot(lhs, rhs_dot)


def _dot_transpose(g, y, x_ndim, dims, preferred, swap_ans=False):
    """The cotangent of ``dot_general(x, y, dims)``'s ``x``, from fp8 ``g`` and ``y``."""
    (x_contract, y_contract), (x_batch, y_batch) = dims
    x_kept = [i for i in range(x_ndim) if i not in (*x_contract, *x_batch)]
    y_kept = [i for i in range(y.ndim) if i not in (*y_contract, *y_batch)]
    y_start = len(x_batch) + (0 if swap_ans else len(x_kept))  # where y's kept axes sit in g
    g_dims = ((range(y_start, y_start + len(y_kept)), y_kept), (range(len(x_batch)), y_batch))
    out = lax.dot_general(g, y, g_dims, lax.Precision.HIGHEST, preferred_element_type=preferred)
    x_contract_by_y = np.take(x_contract, np.argsort(y_contract))
    return lax.transpose(out, tuple(np.argsort([*x_batch, *x_kept, *x_contract_by_y])))


# A dot's fp8 meta: scales, then histories (fp8_scaled_dot_general's order), for the
# input or lhs, the kernel or rhs, and the output's gradient.
_KINDS = ("scale", "amax_history")
_META_NAMES = tuple(f"{op}_{kind}" for kind in _KINDS for op in ("input", "kernel", "output_grad"))
_KEYWORDS = tuple(f"{op}_{kind}" for kind in _KINDS for op in ("lhs", "rhs", "grad"))


def _scaled_dot_fwd(
    lhs,
    rhs,
    dimension_numbers,
    precision=None,
    preferred_element_type=None,
    lhs_scale=None,
    rhs_scale=None,
    grad_scale=None,
    lhs_amax_history=None,
    rhs_amax_history=None,
    grad_amax_history=None,
    quantize_compute_type=jnp.float32,
):
    """``lax.dot_general`` on e4m3 operands, its output's cotangent in e5m2.

    The operands' cotangents come from the fp8 products; each scale's and history's
    is its updated value. (Flax chains three custom VJPs for this one rule.)
    """
    if precision is not None:
        warnings.warn("fp8_scaled_dot_general ignores `precision`.", stacklevel=2)
    e4m3, preferred = jnp.float8_e4m3fn, preferred_element_type
    lhs_scale, lhs_amax_history = update_fp8_meta(lhs, e4m3, lhs_scale, lhs_amax_history)
    rhs_scale, rhs_amax_history = update_fp8_meta(rhs, e4m3, rhs_scale, rhs_amax_history)
    q_lhs = quantize(lhs, e4m3, _as_float(lhs_scale), quantize_compute_type)
    q_rhs = quantize(rhs, e4m3, _as_float(rhs_scale), quantize_compute_type)
    dims, default = dimension_numbers, lax.Precision.DEFAULT
    out = lax.dot_general(q_lhs, q_rhs, dims, default, preferred_element_type=preferred)
    out = dequantize(out, preferred, _as_float(lhs_scale) * _as_float(rhs_scale))
    histories = (lhs_amax_history, rhs_amax_history, grad_amax_history)
    return out, (q_lhs, q_rhs, (lhs_scale, rhs_scale, grad_scale, *histories))


def _scaled_dot_bwd(dims, precision, preferred, compute_dtype, residuals, g):
    q_lhs, q_rhs, (lhs_scale, rhs_scale, grad_scale, lhs_hist, rhs_hist, grad_hist) = residuals
    grad_scale, grad_hist = update_fp8_meta(g, jnp.float8_e5m2, grad_scale, grad_hist)
    q_g = quantize(g, jnp.float8_e5m2, _as_float(grad_scale), preferred)
    # The product's transposes, as fp8 x fp8 dots (what fp8 GEMMs on GPUs run), as Flax does.
    swapped = tuple(pair[::-1] for pair in dims)  # lhs and rhs exchanged
    grad_lhs = _dot_transpose(q_g, q_rhs, q_lhs.ndim, dims, preferred)
    grad_rhs = _dot_transpose(q_g, q_lhs, q_rhs.ndim, swapped, preferred, swap_ans=True)
    grad_lhs = dequantize(grad_lhs, preferred, _as_float(rhs_scale) * _as_float(grad_scale))
    grad_rhs = dequantize(grad_rhs, preferred, _as_float(lhs_scale) * _as_float(grad_scale))
    return grad_lhs, grad_rhs, lhs_scale, rhs_scale, grad_scale, lhs_hist, rhs_hist, grad_hist


fp8_scaled_dot_general = _custom_vjp(_scaled_dot_fwd, _scaled_dot_bwd, (2, 3, 4, 11))


class Fp8DotGeneralBase(Module):
    """Holds the fp8 meta (scales and amax histories) of a dot's input, kernel and
    output gradient in the ``'_overwrite_with_gradient'`` collection."""

    amax_history_length: int = 1024
    e4m3_dtype: Any = jnp.float8_e4m3fn
    e5m2_dtype: Any = jnp.float8_e5m2

    def setup(self) -> None:
        # In Flax's order, histories first; fixed values, so no 'params' key is drawn.
        for name in _META_NAMES[3:] + _META_NAMES[:3]:
            history = name.endswith("history")
            init, shape = (jnp.zeros, (self.amax_history_length,)) if history else (jnp.ones, (1,))
            meta = self.variable(OVERWRITE_WITH_GRADIENT, name, init, shape, jnp.float32)
            setattr(self, name, meta)

    def _meta(self) -> tuple:
        return tuple(getattr(self, name).value for name in _META_NAMES)


class Fp8DotGeneralOp(Fp8DotGeneralBase):
    """A ``dot_general`` for ``dot_general_cls=``: operands (and, backward, the output's
    cotangent) rounded through fp8 around a dot in the kernel's dtype. Deprecated in Flax."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if type(self) is Fp8DotGeneralOp:
            why = "Fp8DotGeneralOp is deprecated: use Fp8DirectDotGeneralOp or Fp8Einsum."
            warnings.warn(why, DeprecationWarning, stacklevel=2)

    def __call__(self, x: Any, k: Any, dims: Any, **_: Any) -> Any:
        # Like Flax, `precision` and the like are ignored; the kernel's dtype computes.
        x = jnp.asarray(x, k.dtype)
        x_scale, k_scale, g_scale, x_hist, k_hist, g_hist = self._meta()
        x = in_qdq(k.dtype, self.e4m3_dtype, x, x_scale, x_hist)
        k = in_qdq(k.dtype, self.e4m3_dtype, k, k_scale, k_hist)
        y = dot_general_with_precision(x, k, dims)
        return out_qdq(k.dtype, self.e5m2_dtype, y, g_scale, g_hist)


class NANOOFp8DotGeneralOp(Fp8DotGeneralOp):
    """:class:`Fp8DotGeneralOp` with the fnuz fp8 types of AMD's NANOO format."""

    e4m3_dtype: Any = jnp.float8_e4m3fnuz
    e5m2_dtype: Any = jnp.float8_e5m2fnuz


class Fp8DirectDotGeneralOp(Fp8DotGeneralBase):
    """A ``dot_general`` for ``dot_general_cls=`` that multiplies in fp8
    (:func:`fp8_scaled_dot_general`) in the kernel's dtype."""

    def __call__(self, x: Any, k: Any, dims: Any, **_: Any) -> Any:
        x = jnp.asarray(x, k.dtype)  # like Flax, `precision` and the like are ignored
        return fp8_scaled_dot_general(x, k, dims, None, k.dtype, *self._meta(), k.dtype)


class Fp8Einsum(Fp8DotGeneralBase):
    """``jnp.einsum(eqn, lhs, rhs)`` with its product in fp8; ``rhs`` is the weight, whose
    dtype is the compute dtype."""

    def __call__(self, eqn: str, lhs, rhs, precision=None, preferred_element_type=None) -> Any:
        meta = dict(zip(_KEYWORDS, self._meta(), strict=True), quantize_compute_type=rhs.dtype)
        dot = partial(fp8_scaled_dot_general, **meta)
        options = dict(precision=precision, preferred_element_type=preferred_element_type)
        return jnp.einsum(eqn, lhs.astype(rhs.dtype), rhs, _dot_general=dot, **options)


Fp8DotGeneral = Fp8DirectDotGeneralOp  # Flax's older name
