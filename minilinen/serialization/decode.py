"""Reading msgpack bytes (Flax's format) back into trees, safely.

The bytes are parsed here rather than by ``msgpack.unpackb`` so that untrusted
input can be bounded: every length is checked against the bytes actually left
before anything is built, containers grow only as their items are read (no
allocation sized by a header), nesting stops at ``MAX_DEPTH``, array dtypes come
from a fixed table (never object or structured dtypes), and an array's shape
must account for exactly the bytes of its buffer. Nothing is ever executed or
imported. Any failure raises ``CorruptDataError``. (``msgpack.unpackb``, even with
its ``max_*_len`` limits, allocates each list at its announced length before reading
its items, so nested headers make it hold depth x input-size slots, and its nesting
limit is 1024 levels; tests/test_serialization_msgpack.py's ``nested_list_claims``.)

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
            arr = _read_ndarray(self.buf, start, n, depth, copy)
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


def _read_ndarray(buf: memoryview, at: int, n: int, depth: int, copy: bool) -> np.ndarray:
    """Reads the ExtType 1/3 payload ``buf[at:at + n]``, ``(shape, dtype name, bin)``.

    The array is a copy, or with ``copy`` False a view into ``buf``.
    """
    payload = buf[at : at + n]
    seen = _SEEN_HEADERS.get(n)
    if seen is None or payload[: len(seen[0])] != seen[0]:
        seen = _parse_header(buf, at, n, depth)
    header, shape, dtype = seen
    data = len(header)
    if data == n:
        return np.empty(shape, dtype)
    if dtype == np.bool_ and np.frombuffer(payload, np.uint8, offset=data).max() > 1:
        raise CorruptDataError(f"The bool array at offset {at} holds bytes other than 0 and 1.")
    if not copy:
        return np.ndarray(shape, dtype, buffer=payload, offset=data)
    # A bytearray is one memcpy into malloc'd memory. NumPy's own allocator asks for
    # transparent huge pages, and with the kernel's default defrag=madvise their first
    # touch stalls on compaction: reading into fresh memory ran ~4x slower that way.
    owned = bytearray(payload[data:])
    return np.frombuffer(owned, dtype).reshape(shape)


# payload size -> (header bytes, shape, dtype) of the last valid array payload of that
# size; a tree's arrays share few layouts, so most arrays skip parsing their header.
_SEEN_HEADERS: dict[int, tuple[bytes, tuple, np.dtype]] = {}


def _parse_header(buf: memoryview, at: int, n: int, depth: int) -> tuple:
    """Parses and checks the header of the array payload ``buf[at:at + n]``."""
    if buf[at : at + 1] != b"\x93":
        raise CorruptDataError(f"An array at offset {at} is not (shape, dtype, data).")
    reader = _Reader(buf, at + 1, at + n)
    shape, name = reader.read(depth + 1), reader.read(depth + 1)
    marker = buf[reader.pos] if reader.pos < reader.end else None
    if marker not in (0xC4, 0xC5, 0xC6):  # bin8, bin16, bin32
        raise CorruptDataError(f"The data of the array at offset {at} is not a bin.")
    reader.pos += 1
    nbytes = reader.unpack(_SIZE[marker])
    data = reader.pos - at
    if data + nbytes != n:
        raise CorruptDataError(
            f"The array at offset {at} announces {nbytes} data bytes; its payload has {n - data}."
        )
    shape, dtype = _layout(shape, name, at)
    expected = math.prod(shape) * dtype.itemsize
    if nbytes != expected:
        raise CorruptDataError(
            f"The array at offset {at} claims shape {shape} of {dtype.name} "
            f"({expected} bytes) but its buffer holds {nbytes} bytes."
        )
    if len(_SEEN_HEADERS) >= 4096:  # trees reuse a few layouts; keep the cache small regardless
        _SEEN_HEADERS.clear()
    _SEEN_HEADERS[n] = seen = (bytes(buf[at : at + data]), shape, dtype)
    return seen


def _layout(shape: Any, name: Any, at: int) -> tuple[tuple, np.dtype]:
    """Checks a shape and dtype name from the wire; returns them as a tuple and a dtype."""
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
    return shape, dtype


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
