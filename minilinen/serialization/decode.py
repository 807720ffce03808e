"""Reading msgpack bytes (Flax's format) back into trees, safely.

The bytes are parsed here rather than by ``msgpack.unpackb`` so that untrusted
input can be bounded: every length is checked against the bytes actually left
before anything is built, containers grow only as their items are read (no
allocation sized by a header), nesting stops at ``MAX_DEPTH``, array dtypes come
from a fixed table (never object or structured dtypes), and an array's shape
must account for exactly the bytes of its buffer. Nothing is ever executed or
imported. Any failure raises ``CorruptDataError``.

Array data is copied once, out of the input into its own aligned, writable
array (the chunks of a chunked array are viewed in place and joined in that one
copy).
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
    try:
        value = reader.read(0)
    except RecursionError:
        # MAX_DEPTH keeps the reader within Python's default stack; a caller already
        # deep in its own stack may still run out first.
        raise CorruptDataError("The data is nested too deeply for this call stack.") from None
    if reader.pos != len(buf):
        raise CorruptDataError(
            f"{len(buf) - reader.pos} bytes of trailing data after the msgpack value "
            f"(which ends at offset {reader.pos} of {len(buf)})."
        )
    return value


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

    __slots__ = ("buf", "pos", "end", "copy")

    def __init__(self, buf: memoryview, pos: int, end: int):
        self.buf = buf
        self.pos = pos
        self.end = end
        # Arrays are copied out of the input as they are read, except the chunks of
        # a chunked array, which are joined (copied once) when its map is complete.
        self.copy = True

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
        pos = self.pos
        if pos >= self.end:
            raise CorruptDataError(f"Truncated data: a value expected at offset {pos}.")
        b = self.buf[pos]
        self.pos = pos + 1
        if b <= 0x7F:
            return b
        if b <= 0x8F:
            return self.read_map(b & 0x0F, depth)
        if b <= 0x9F:
            return self.read_list(b & 0x0F, depth)
        if b <= 0xBF:
            return self.read_str(b & 0x1F)
        if b >= 0xE0:
            return b - 0x100
        return _DISPATCH[b - 0xC0](self, b, depth)

    def refuse(self, depth: int, what: str) -> None:
        """Raises why a container cannot be read: nested too deeply, or too long to fit."""
        if depth >= MAX_DEPTH:
            raise CorruptDataError(f"Maps and lists nested deeper than {MAX_DEPTH} levels.")
        raise CorruptDataError(
            f"A {what} at offset {self.pos} cannot fit in the {self.end - self.pos} bytes left."
        )

    def read_map(self, n: int, depth: int) -> Any:
        if depth >= MAX_DEPTH or 2 * n > self.end - self.pos:
            self.refuse(depth, f"map of {n} entries")
        out = {}
        copy = self.copy
        for _ in range(n):
            key = self.read(depth + 1)
            if type(key) not in _KEY_TYPES:
                raise CorruptDataError(f"A map key of type {type(key).__name__}.")
            if key == CHUNKED_ARRAY_KEY:
                self.copy = False
            out[key] = self.read(depth + 1)
        self.copy = copy
        if CHUNKED_ARRAY_KEY in out:
            return _unchunk(out)
        return out

    def read_list(self, n: int, depth: int) -> list:
        if depth >= MAX_DEPTH or n > self.end - self.pos:
            self.refuse(depth, f"list of {n} items")
        return [self.read(depth + 1) for _ in range(n)]

    def read_str(self, n: int, depth: int = 0) -> str:
        start = self.take(n)
        try:
            return str(self.buf[start : start + n], "utf-8")
        except UnicodeDecodeError:
            raise CorruptDataError(f"A string at offset {start} is not valid UTF-8.") from None

    def read_bin(self, n: int, depth: int) -> bytes:
        start = self.take(n)
        return bytes(self.buf[start : start + n])

    def read_ext(self, n: int, depth: int) -> Any:
        code = self.buf[self.take(n + 1)]
        start = self.pos - n
        if code == EXT_NDARRAY or code == EXT_NPSCALAR:
            copy = self.copy and code == EXT_NDARRAY
            arr = _read_ndarray(self.buf[start : start + n], start, depth, copy)
            if code == EXT_NDARRAY:
                return arr
            if arr.shape != ():
                raise CorruptDataError(f"A NumPy scalar at offset {start} has shape {arr.shape}.")
            return arr[()]
        if code == EXT_COMPLEX:
            sub = _Reader(self.buf, start, start + n)
            parts = sub.read(depth + 1)
            if (
                sub.pos != sub.end
                or type(parts) is not list
                or len(parts) != 2
                or not all(type(p) in (int, float) for p in parts)
            ):
                raise CorruptDataError(f"A complex value at offset {start} is not (real, imag).")
            return complex(parts[0], parts[1])
        code = code - 256 if code > 127 else code  # ext type codes are signed
        raise CorruptDataError(f"Unknown msgpack extension type {code} at offset {start}.")


# --- the type bytes 0xc0..0xdf -------------------------------------------------------

_SIZE = {0xC4: _U8, 0xC5: _U16, 0xC6: _U32, 0xC7: _U8, 0xC8: _U16, 0xC9: _U32}
_SIZE.update({0xD9: _U8, 0xDA: _U16, 0xDB: _U32, 0xDC: _U16, 0xDD: _U32, 0xDE: _U16, 0xDF: _U32})
_NUMBER = {0xCA: _F32, 0xCB: _F64, 0xCC: _U8, 0xCD: _U16, 0xCE: _U32, 0xCF: _U64}
_NUMBER.update({0xD0: _I8, 0xD1: _I16, 0xD2: _I32, 0xD3: _I64})
_FIXEXT_SIZE = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


def _nil(r: _Reader, b: int, depth: int) -> None:
    return None


def _bool(r: _Reader, b: int, depth: int) -> bool:
    return b == 0xC3


def _never_used(r: _Reader, b: int, depth: int) -> Any:
    raise CorruptDataError(f"Byte 0xc1 (never used in msgpack) at offset {r.pos - 1}.")


def _number(r: _Reader, b: int, depth: int) -> int | float:
    return r.unpack(_NUMBER[b])


def _sized(read: Any) -> Any:
    """The handler of a type byte followed by its length (a big-endian _SIZE[b])."""
    return lambda r, b, depth: read(r, r.unpack(_SIZE[b]), depth)


def _fixext(r: _Reader, b: int, depth: int) -> Any:
    return r.read_ext(_FIXEXT_SIZE[b], depth)


_bin, _ext, _str = _sized(_Reader.read_bin), _sized(_Reader.read_ext), _sized(_Reader.read_str)
_list, _map = _sized(_Reader.read_list), _sized(_Reader.read_map)
_DISPATCH = (_nil, _never_used, _bool, _bool, _bin, _bin, _bin, _ext, _ext, _ext)
_DISPATCH += (_number,) * 10 + (_fixext,) * 5 + (_str,) * 3 + (_list,) * 2 + (_map,) * 2


# --- arrays ----------------------------------------------------------------------------


def _read_ndarray(payload: memoryview, at: int, depth: int, copy: bool) -> np.ndarray:
    """Reads an ExtType 1/3 payload ``(shape, dtype name, bin)``: a copy, or a view into it."""
    n = len(payload)
    seen = _SEEN_HEADERS.get(n)
    if seen is not None and payload[: len(seen[0])] == seen[0]:
        # The same header as an array read before: same shape, dtype and size.
        shape, dtype, nbytes, is_bool = seen[1]
        data = len(seen[0])
    else:
        shape, dtype, nbytes, is_bool, data = _parse_ndarray(payload, at, depth)
    if not nbytes:
        return np.empty(shape, dtype)
    if is_bool and np.frombuffer(payload, np.uint8, nbytes, data).max() > 1:
        raise CorruptDataError(f"The bool array at offset {at} holds bytes other than 0 and 1.")
    if not copy:
        return np.ndarray(shape, dtype, buffer=payload, offset=data)
    # A bytearray is one memcpy into malloc'd memory. NumPy's own allocator asks for
    # transparent huge pages, and with the kernel's default defrag=madvise their first
    # touch stalls on compaction: reading into fresh memory ran ~4x slower that way.
    owned = bytearray(payload[data:])
    return np.frombuffer(owned, dtype).reshape(shape)


def _parse_ndarray(payload: memoryview, at: int, depth: int) -> tuple:
    """Parses and checks an array payload's header; returns its layout and data offset."""
    n = len(payload)
    try:
        if payload[0] != 0x93:
            raise CorruptDataError(f"An array at offset {at} is not (shape, dtype, data).")
        shape, pos = _read_shape(payload)
        if shape is None:  # an encoding Flax never writes: take the general path
            shape, pos = _read_at(payload, 1, depth + 1)
        b = payload[pos]
        if 0xA0 <= b <= 0xBF and pos + 1 + (b & 0x1F) <= n:
            name = str(payload[pos + 1 : pos + 1 + (b & 0x1F)], "utf-8")
            pos += 1 + (b & 0x1F)
        else:
            name, pos = _read_at(payload, pos, depth + 1)
        if payload[pos] not in (0xC4, 0xC5, 0xC6):
            raise CorruptDataError(f"The data of the array at offset {at} is not a bin.")
        size = _SIZE[payload[pos]]
        nbytes, data = size.unpack_from(payload, pos + 1)[0], pos + 1 + size.size
    except (IndexError, struct.error, UnicodeDecodeError):
        raise CorruptDataError(f"The array at offset {at} is truncated or malformed.") from None
    if data + nbytes != n:
        raise CorruptDataError(
            f"The array at offset {at} announces {nbytes} data bytes; its payload has {n - data}."
        )
    layout = _LAYOUTS.get((shape, name)) if type(shape) is tuple else None
    if layout is None:
        layout = _layout(shape, name, at)
        if len(_LAYOUTS) >= 4096:  # trees reuse a few layouts; keep the cache small regardless
            _LAYOUTS.clear()
        _LAYOUTS[(layout[0], name)] = layout
    shape, dtype, expected, is_bool = layout
    if nbytes != expected:
        raise CorruptDataError(
            f"The array at offset {at} claims shape {shape} of {dtype.name} "
            f"({expected} bytes) but its buffer holds {nbytes} bytes."
        )
    if len(_SEEN_HEADERS) >= 4096:
        _SEEN_HEADERS.clear()
    _SEEN_HEADERS[n] = (bytes(payload[:data]), layout)
    return shape, dtype, nbytes, is_bool, data


def _read_at(payload: memoryview, pos: int, depth: int) -> tuple[Any, int]:
    """The value at ``pos`` of ``payload``, and where it ends."""
    reader = _Reader(payload, pos, len(payload))
    return reader.read(depth), reader.pos


def _read_shape(payload: memoryview) -> tuple[tuple | None, int]:
    """The shape at offset 1 if written as Flax writes it (a fixarray of unsigned ints)."""
    b = payload[1]
    if not 0x90 <= b <= 0x9F:
        return None, 1
    pos = 2
    dims = []
    for _ in range(b & 0x0F):
        b = payload[pos]
        if b <= 0x7F:
            dims.append(b)
            pos += 1
        elif b == 0xCC:
            dims.append(payload[pos + 1])
            pos += 2
        elif 0xCD <= b <= 0xCF:
            fmt = _NUMBER[b]
            dims.append(fmt.unpack_from(payload, pos + 1)[0])
            pos += 1 + fmt.size
        else:
            return None, 1
    return tuple(dims), pos


# (shape, dtype name) -> the validated (shape, dtype, byte size, is bool) of such arrays.
_LAYOUTS: dict[tuple, tuple] = {}
# payload size -> (header bytes, layout) of the last valid array payload of that size;
# a tree's arrays share few layouts, so most arrays skip parsing their header.
_SEEN_HEADERS: dict[int, tuple[bytes, tuple]] = {}


def _layout(shape: Any, name: Any, at: int) -> tuple:
    """Checks a shape and dtype name from the wire; returns their layout."""
    if type(shape) not in (list, tuple) or not _is_shape(shape):
        raise CorruptDataError(f"The array at offset {at} has an invalid shape {shape!r:.80}.")
    dtype = dtype_from_name(name) if type(name) is str else None
    if dtype is None:
        raise CorruptDataError(
            f"The array at offset {at} has dtype {name!r:.40}, which is not a numeric, "
            "bool, text or ml_dtypes dtype (object and structured dtypes are refused)."
        )
    shape = tuple(shape)
    if 0 in shape:
        # Empty, yet NumPy still refuses dimensions past its index range.
        try:
            np.empty(shape, dtype)
        except (ValueError, OverflowError, MemoryError) as e:
            raise CorruptDataError(f"The array at offset {at} cannot be built: {e}") from None
    return shape, dtype, math.prod(shape) * dtype.itemsize, dtype == np.bool_


def _is_shape(dims: list | tuple) -> bool:
    return len(dims) <= _MAX_NDIM and all(type(d) is int and d >= 0 for d in dims)


def _as_tuple(d: Any, what: str) -> tuple:
    if type(d) is not dict or any(str(i) not in d for i in range(len(d))):
        raise CorruptDataError(f"A chunked array's {what} is not a dict keyed '0', '1', ...")
    return tuple(d[str(i)] for i in range(len(d)))


def _unchunk(value: dict) -> np.ndarray:
    if set(value) != {CHUNKED_ARRAY_KEY, "shape", "chunks"}:
        raise CorruptDataError(f"A chunked array with keys {sorted(map(str, value))}.")
    shape = _as_tuple(value["shape"], "shape")
    chunks = _as_tuple(value["chunks"], "chunks")
    if not _is_shape(shape):
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
