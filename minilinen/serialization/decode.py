"""Reading msgpack bytes (Flax's format) back into trees, safely.

The bytes are parsed here rather than by ``msgpack.unpackb`` so that untrusted
input can be bounded: every length is checked against the bytes actually left
before anything is built, containers grow only as their items are read (no
allocation sized by a header), nesting stops at ``MAX_DEPTH``, array dtypes come
from a fixed table (never object or structured dtypes), and an array's shape
must account for exactly the bytes of its buffer. Nothing is ever executed or
imported. Any failure raises ``CorruptDataError``.

Array data is first viewed in place in the input, then copied once into its own
aligned, writable array (chunked arrays are assembled in that same copy).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from minilinen.errors import CorruptDataError, SerializationTypeError
from minilinen.serialization.dtypes import dtype_from_name
from minilinen.serialization.encode import (
    CHUNKED_ARRAY_KEY,
    EXT_COMPLEX,
    EXT_NDARRAY,
    EXT_NPSCALAR,
    MAX_DEPTH,
)
from minilinen.serialization.state_dict import from_state_dict

__all__ = ["msgpack_restore", "from_bytes"]

_MAX_NDIM = 64  # NumPy's own limit
_KEY_TYPES = frozenset({str, bytes, int, float, bool, type(None)})
_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in (">B", ">H", ">I", ">Q"))
_I8, _I16, _I32, _I64 = (struct.Struct(f) for f in (">b", ">h", ">i", ">q"))
_F32, _F64 = struct.Struct(">f"), struct.Struct(">d")


def msgpack_restore(encoded: Any) -> Any:
    """Unpacks msgpack bytes made by ``msgpack_serialize`` (or by Flax) into a tree."""
    buf = _byte_view(encoded)
    reader = _Reader(buf, 0, len(buf))
    value = reader.read(0)
    if reader.pos != len(buf):
        raise CorruptDataError(
            f"{len(buf) - reader.pos} bytes of trailing data after the msgpack value "
            f"(which ends at offset {reader.pos} of {len(buf)})."
        )
    return _detach(value)


def from_bytes(target: Any, encoded: Any) -> Any:
    """Restores ``target``'s structure from msgpack bytes (see ``from_state_dict``)."""
    return from_state_dict(target, msgpack_restore(encoded))


def _byte_view(encoded: Any) -> memoryview:
    try:
        view = memoryview(encoded)
    except TypeError:
        raise SerializationTypeError(
            f"Expected bytes, bytearray or memoryview, got {type(encoded).__name__}."
        ) from None
    if view.format != "B" or view.ndim != 1:
        try:
            view = view.cast("B")
        except TypeError:
            raise SerializationTypeError("Expected a C-contiguous bytes-like object.") from None
    return view


class _Reader:
    """A cursor over ``buf[pos:end]`` that decodes one msgpack value per ``read``."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview, pos: int, end: int):
        self.buf = buf
        self.pos = pos
        self.end = end

    def take(self, n: int) -> int:
        """Claims the next ``n`` bytes and returns where they start."""
        start = self.pos
        if n > self.end - start:
            raise CorruptDataError(
                f"Truncated data: {n} bytes announced at offset {start}, only "
                f"{self.end - start} left."
            )
        self.pos = start + n
        return start

    def unpack(self, fmt: struct.Struct) -> Any:
        return fmt.unpack_from(self.buf, self.take(fmt.size))[0]

    def read(self, depth: int) -> Any:
        b = self.buf[self.take(1)]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if b <= 0x8F:
            return self.read_map(b & 0x0F, depth)
        if b <= 0x9F:
            return self.read_list(b & 0x0F, depth)
        if b <= 0xBF:
            return self.read_str(b & 0x1F)
        return _DISPATCH[b - 0xC0](self, depth)

    def read_map(self, n: int, depth: int) -> dict:
        if depth >= MAX_DEPTH:
            raise CorruptDataError(f"Maps and lists nested deeper than {MAX_DEPTH} levels.")
        if 2 * n > self.end - self.pos:
            raise CorruptDataError(
                f"A map of {n} entries at offset {self.pos} cannot fit in the "
                f"{self.end - self.pos} bytes left."
            )
        out = {}
        for _ in range(n):
            key = self.read(depth + 1)
            if type(key) not in _KEY_TYPES:
                raise CorruptDataError(f"A map key of type {type(key).__name__}.")
            out[key] = self.read(depth + 1)
        return out

    def read_list(self, n: int, depth: int) -> list:
        if depth >= MAX_DEPTH:
            raise CorruptDataError(f"Maps and lists nested deeper than {MAX_DEPTH} levels.")
        if n > self.end - self.pos:
            raise CorruptDataError(
                f"A list of {n} items at offset {self.pos} cannot fit in the "
                f"{self.end - self.pos} bytes left."
            )
        return [self.read(depth + 1) for _ in range(n)]

    def read_str(self, n: int) -> str:
        start = self.take(n)
        try:
            return str(self.buf[start : start + n], "utf-8")
        except UnicodeDecodeError:
            raise CorruptDataError(f"A string at offset {start} is not valid UTF-8.") from None

    def read_bin(self, n: int) -> bytes:
        start = self.take(n)
        return bytes(self.buf[start : start + n])

    def read_ext(self, n: int, depth: int) -> Any:
        code = self.unpack(_I8)
        start = self.take(n)
        sub = _Reader(self.buf, start, start + n)
        if code == EXT_NDARRAY or code == EXT_NPSCALAR:
            arr = sub.read_ndarray(depth)
            if code == EXT_NDARRAY:
                return arr
            if arr.shape != ():
                raise CorruptDataError(f"A NumPy scalar at offset {start} has shape {arr.shape}.")
            return arr[()]
        if code == EXT_COMPLEX:
            parts = sub.read(depth + 1)
            if (
                sub.pos != sub.end
                or type(parts) is not list
                or len(parts) != 2
                or not all(type(p) in (int, float) for p in parts)
            ):
                raise CorruptDataError(f"A complex value at offset {start} is not (real, imag).")
            return complex(parts[0], parts[1])
        raise CorruptDataError(f"Unknown msgpack extension type {code} at offset {start}.")

    def read_ndarray(self, depth: int) -> np.ndarray:
        """Reads ``(shape, dtype name, bin)``, the whole of this reader's range."""
        at = self.pos
        if self.buf[self.take(1)] != 0x93:
            raise CorruptDataError(f"An array at offset {at} is not (shape, dtype, data).")
        shape = self.read(depth + 1)
        name = self.read(depth + 1)
        marker = self.buf[self.take(1)]
        if marker == 0xC4:
            nbytes = self.unpack(_U8)
        elif marker == 0xC5:
            nbytes = self.unpack(_U16)
        elif marker == 0xC6:
            nbytes = self.unpack(_U32)
        else:
            raise CorruptDataError(f"The data of the array at offset {at} is not a bin.")
        data = self.take(nbytes)
        if self.pos != self.end:
            raise CorruptDataError(
                f"The array at offset {at} has {self.end - self.pos} extra bytes."
            )
        if (
            type(shape) is not list
            or len(shape) > _MAX_NDIM
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise CorruptDataError(f"The array at offset {at} has an invalid shape {shape!r:.80}.")
        dtype = dtype_from_name(name) if type(name) is str else None
        if dtype is None:
            raise CorruptDataError(
                f"The array at offset {at} has dtype {name!r:.40}, which is not a numeric, "
                "bool, text or ml_dtypes dtype (object and structured dtypes are refused)."
            )
        count = math.prod(shape)
        if count * dtype.itemsize != nbytes:
            raise CorruptDataError(
                f"The array at offset {at} claims shape {tuple(shape)} of {dtype.name} "
                f"({count * dtype.itemsize} bytes) but its buffer holds {nbytes} bytes."
            )
        try:
            if count == 0:
                return np.empty(shape, dtype)
            arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=data).reshape(shape)
        except (ValueError, OverflowError, MemoryError) as e:
            raise CorruptDataError(f"The array at offset {at} cannot be built: {e}") from None
        if dtype == np.bool_ and np.frombuffer(self.buf, np.uint8, count, data).max() > 1:
            raise CorruptDataError(f"The bool array at offset {at} holds bytes other than 0 and 1.")
        return arr


def _fixed(fmt: struct.Struct):
    return lambda r, depth: r.unpack(fmt)


def _sized(fmt: struct.Struct, method: str):
    if method == "read_str" or method == "read_bin":
        return lambda r, depth: getattr(r, method)(r.unpack(fmt))
    return lambda r, depth: getattr(r, method)(r.unpack(fmt), depth)


def _const(value: Any):
    return lambda r, depth: value


def _never_used(r: _Reader, depth: int) -> Any:
    raise CorruptDataError(f"Byte 0xc1 (never used in msgpack) at offset {r.pos - 1}.")


def _fixext(n: int):
    return lambda r, depth: r.read_ext(n, depth)


# Handlers for the type bytes 0xc0..0xdf, in order.
_DISPATCH = (
    _const(None),
    _never_used,
    _const(False),
    _const(True),
    _sized(_U8, "read_bin"),
    _sized(_U16, "read_bin"),
    _sized(_U32, "read_bin"),
    _sized(_U8, "read_ext"),
    _sized(_U16, "read_ext"),
    _sized(_U32, "read_ext"),
    _fixed(_F32),
    _fixed(_F64),
    _fixed(_U8),
    _fixed(_U16),
    _fixed(_U32),
    _fixed(_U64),
    _fixed(_I8),
    _fixed(_I16),
    _fixed(_I32),
    _fixed(_I64),
    _fixext(1),
    _fixext(2),
    _fixext(4),
    _fixext(8),
    _fixext(16),
    _sized(_U8, "read_str"),
    _sized(_U16, "read_str"),
    _sized(_U32, "read_str"),
    _sized(_U16, "read_list"),
    _sized(_U32, "read_list"),
    _sized(_U16, "read_map"),
    _sized(_U32, "read_map"),
)


def _detach(value: Any) -> Any:
    """Copies every array out of the input buffer and joins chunked arrays."""
    t = type(value)
    if t is np.ndarray:
        return value.copy()
    if t is dict:
        if CHUNKED_ARRAY_KEY in value:
            return _unchunk(value)
        for k, v in value.items():
            value[k] = _detach(v)
    elif t is list:
        for i, v in enumerate(value):
            value[i] = _detach(v)
    return value


def _as_tuple(d: Any, what: str) -> tuple:
    if type(d) is not dict or any(str(i) not in d for i in range(len(d))):
        raise CorruptDataError(f"A chunked array's {what} is not a dict keyed '0', '1', ...")
    return tuple(d[str(i)] for i in range(len(d)))


def _unchunk(value: dict) -> np.ndarray:
    if set(value) != {CHUNKED_ARRAY_KEY, "shape", "chunks"}:
        raise CorruptDataError(f"A chunked array with keys {sorted(map(str, value))}.")
    shape = _as_tuple(value["shape"], "shape")
    chunks = _as_tuple(value["chunks"], "chunks")
    if len(shape) > _MAX_NDIM or not all(type(d) is int and d >= 0 for d in shape):
        raise CorruptDataError(f"A chunked array has an invalid shape {shape!r:.80}.")
    if not chunks or not all(type(c) is np.ndarray and c.ndim == 1 for c in chunks):
        raise CorruptDataError("A chunked array's chunks are not one-dimensional arrays.")
    dtype = chunks[0].dtype
    if any(c.dtype != dtype for c in chunks):
        raise CorruptDataError("A chunked array's chunks disagree on their dtype.")
    if sum(c.size for c in chunks) != math.prod(shape):
        raise CorruptDataError(
            f"A chunked array of shape {shape} has {sum(c.size for c in chunks)} elements."
        )
    return np.concatenate(chunks).reshape(shape)
