"""The array dtypes the wire format carries, looked up by their NumPy name.

Bytes name a dtype by ``dtype.name`` ('float32', 'bfloat16', 'datetime64[ns]').
Reading never hands an untrusted string to ``np.dtype``, which would parse
structured and object dtypes: names resolve through a fixed table or a strict
pattern.
"""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np

__all__ = ["dtype_from_name", "is_wire_dtype"]

# NumPy's own dtypes, by a name np.dtype knows them under (their wire names differ
# for longdouble and clongdouble: 'float128', 'complex256' on x86-64 Linux).
_NUMPY_NAMES = """bool int8 int16 int32 int64 uint8 uint16 uint32 uint64
    float16 float32 float64 longdouble complex64 complex128 clongdouble""".split()
_ML_DTYPE_NAMES = """bfloat16 float8_e3m4 float8_e4m3 float8_e4m3b11fnuz float8_e4m3fn
    float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz float8_e8m0fnu float6_e2m3fn float6_e3m2fn
    float4_e2m1fn int1 int2 int4 uint1 uint2 uint4 complex32 bcomplex32""".split()

_BY_NAME: dict[str, np.dtype] = {np.dtype(n).name: np.dtype(n) for n in _NUMPY_NAMES}
# Older ml_dtypes lack the newest formats.
_BY_NAME.update(
    {n: np.dtype(getattr(ml_dtypes, n)) for n in _ML_DTYPE_NAMES if hasattr(ml_dtypes, n)}
)

_TIME_RE = re.compile(
    r"(?:datetime64|timedelta64)(?:\[(?:[1-9][0-9]{0,2})?(?:Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\])?\Z"
)
_TEXT_RE = re.compile(r"(str|bytes)([1-9][0-9]{0,8})\Z")


def dtype_from_name(name: str) -> np.dtype | None:
    """The dtype ``name`` stands for, or None if the wire format does not carry it."""
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    if _TIME_RE.match(name):
        return np.dtype(name)
    text = _TEXT_RE.match(name)
    if text:
        # NumPy names text dtypes by their size in bits: 'str96' is '<U3', 'bytes24' is 'S3'.
        kind, bits = text.group(1), int(text.group(2))
        per_char = 32 if kind == "str" else 8
        if bits % per_char == 0:
            return np.dtype(("U" if kind == "str" else "S") + str(bits // per_char))
    return None


def is_wire_dtype(dtype: np.dtype) -> bool:
    """Whether arrays of ``dtype`` can be written (its name reads back as itself)."""
    return dtype_from_name(dtype.name) == dtype
