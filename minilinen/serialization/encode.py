"""Writing pytrees as msgpack bytes, byte for byte as Flax writes them.

The format (DESIGN.md): maps and lists as msgpack maps and arrays; an array as
ExtType 1 whose payload is the msgpack of ``(shape, dtype name, C-order bytes)``;
a NumPy scalar as ExtType 3 in the same form; a Python complex as ExtType 2
holding ``(real, imag)``. An array bigger than ``MAX_CHUNK_SIZE`` bytes that is
the top-level value or a dict value becomes a map ``{'__msgpack_chunked_array__':
True, 'shape': {'0': d0, ...}, 'chunks': {'0': flat_chunk, ...}}``.

Flax packs each array's bytes into a payload and then packs the payload into
the output, copying every array several times. Here headers are packed on their
own and the array memory goes into the output untouched: ``msgpack_serialize``
copies each array once (into the returned bytes), and ``serialize_pieces`` not at
all, for writers that stream the pieces to a file.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import jax
import msgpack
import numpy as np

from minilinen.errors import SerializationError, SerializationTypeError
from minilinen.serialization.dtypes import is_wire_dtype
from minilinen.serialization.state_dict import to_state_dict

__all__ = ["MAX_CHUNK_SIZE", "msgpack_serialize", "serialize_pieces", "to_bytes"]

# Arrays over this many bytes are split: msgpack's bin type stops at 4 GiB.
# Read at call time, so tests may lower it.
MAX_CHUNK_SIZE = 2**30
CHUNKED_ARRAY_KEY = "__msgpack_chunked_array__"
MAX_DEPTH = 256

EXT_NDARRAY, EXT_COMPLEX, EXT_NPSCALAR = 1, 2, 3

# strict_types: a subclass of dict/list/int is not silently packed as its base,
# and a tuple is not a list; Flax's packer behaves the same way.
_pack = msgpack.Packer(use_bin_type=True, strict_types=True, autoreset=True).pack
_PLAIN = frozenset({str, int, float, bool, type(None)})
_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
_FIXMAP = [bytes([0x80 | n]) for n in range(16)]
_FIXARRAY = [bytes([0x90 | n]) for n in range(16)]
_TRUE = _pack(True)
_CHUNK_HEAD = _FIXMAP[3] + _pack(CHUNKED_ARRAY_KEY) + _TRUE
_SHAPE_KEY = _pack("shape")
_CHUNKS_KEY = _pack("chunks")


def msgpack_serialize(pytree: Any, in_place: bool = False) -> bytes:
    """Packs a tree of dicts, lists and leaves into msgpack bytes (Flax's format).

    Args:
      pytree: nested dicts/lists of arrays, NumPy or Python scalars, str, bytes, None.
      in_place: False writes every dict's keys sorted, True in insertion order, as
        Flax does (its copy of the tree goes through ``tree_map``, which sorts).
        The tree is never modified either way.
    """
    return b"".join(serialize_pieces(pytree, sort_keys=not in_place))


def to_bytes(target: Any) -> bytes:
    """Serializes ``target`` (any state-dict-able pytree) to msgpack bytes."""
    return b"".join(serialize_pieces(to_state_dict(target)))


def serialize_pieces(pytree: Any, sort_keys: bool = False) -> list:
    """The msgpack bytes of ``pytree`` as a list of buffers whose concatenation is them."""
    out: list = []
    try:
        _emit(pytree, out, 0, True, sort_keys)
    except RecursionError:
        raise SerializationError("The tree is nested too deeply for this call stack.") from None
    return out


def _sorted_items(x: dict) -> list:
    try:
        return [(k, x[k]) for k in sorted(x)]
    except TypeError:
        raise SerializationTypeError(
            f"Cannot sort the dict keys {list(x)[:10]}; use in_place=True to keep their order."
        ) from None


def _emit(x: Any, out: list, depth: int, chunkable: bool, sort_keys: bool = False) -> None:
    t = type(x)
    if t is dict:
        if depth >= MAX_DEPTH:
            raise SerializationError(f"The tree is nested deeper than {MAX_DEPTH} levels.")
        n = len(x)
        out.append(_FIXMAP[n] if n < 16 else _container_header(0xDE, n))
        for k, v in _sorted_items(x) if sort_keys else x.items():
            _emit(k, out, depth + 1, False)
            _emit(v, out, depth + 1, True, sort_keys)
    elif t is np.ndarray:
        _emit_array(x, out, EXT_NDARRAY, chunkable)
    elif t in _PLAIN:
        try:
            out.append(_pack(x))
        except OverflowError:
            raise SerializationError(
                f"The integer {x} does not fit msgpack's 64 bits; store it as an array or a string."
            ) from None
    elif t is bytes:
        out.append(_bin_header(len(x)))
        out.append(x)
    elif t is list:
        if depth >= MAX_DEPTH:
            raise SerializationError(f"The tree is nested deeper than {MAX_DEPTH} levels.")
        n = len(x)
        out.append(_FIXARRAY[n] if n < 16 else _container_header(0xDC, n))
        for v in x:
            _emit(v, out, depth + 1, False, sort_keys)  # Flax never chunks inside lists
    elif isinstance(x, (np.ndarray, jax.Array)):
        _emit_array(np.asarray(x), out, EXT_NDARRAY, chunkable)
    elif isinstance(x, np.generic):
        _emit_array(np.asarray(x), out, EXT_NPSCALAR, False)
    elif isinstance(x, complex):
        payload = _pack([float(x.real), float(x.imag)])
        out.append(_ext_header(EXT_COMPLEX, len(payload)) + payload)
    else:
        raise SerializationTypeError(
            f"Cannot serialize a value of type {t.__name__}: the msgpack format holds "
            "dicts, lists, arrays, NumPy and Python scalars, str, bytes and None. Convert "
            "it, or register a state-dict handler with register_serialization_state."
        )


def _emit_array(arr: np.ndarray, out: list, code: int, chunkable: bool) -> None:
    dtype = arr.dtype
    if not dtype.isnative:
        # Flax would write the foreign-order bytes under the native name; fix the order.
        dtype = dtype.newbyteorder("=")
        arr = arr.astype(dtype)
    if not arr.flags.c_contiguous:
        arr = np.array(arr, order="C")
    if chunkable and arr.nbytes > MAX_CHUNK_SIZE:
        _emit_chunked(arr, out)
        return
    key = (arr.shape, dtype, code)
    head = _HEADS.get(key)
    if head is None:
        head = _array_head(arr.shape, dtype, code)
        if len(_HEADS) >= 4096:  # trees reuse a few shapes; keep the cache small regardless
            _HEADS.clear()
        _HEADS[key] = head
    out.append(head)
    if arr.nbytes:
        # A uint8 view exports a plain byte buffer for every dtype (bfloat16's own
        # buffer format is not understood by memoryview).
        out.append(arr.reshape(-1).view(np.uint8))


# (shape, dtype, ext code) -> the ext header and payload header of such arrays.
_HEADS: dict[tuple, bytes] = {}


def _array_head(shape: tuple, dtype: np.dtype, code: int) -> bytes:
    if not is_wire_dtype(dtype):
        raise SerializationTypeError(
            f"Cannot serialize an array of dtype {dtype}: object, structured and void "
            "dtypes have no portable byte form. Use a numeric, bool or ml_dtypes dtype."
        )
    nbytes = math.prod(shape) * dtype.itemsize
    head = b"\x93" + _pack(list(shape)) + _pack(dtype.name) + _bin_header(nbytes)
    return _ext_header(code, len(head) + nbytes) + head


def _emit_chunked(arr: np.ndarray, out: list) -> None:
    flat = arr.reshape(-1)
    step = max(1, int(MAX_CHUNK_SIZE // arr.dtype.itemsize))
    starts = range(0, flat.size, step)
    out.append(_CHUNK_HEAD)
    out.append(_SHAPE_KEY)
    _emit({str(i): d for i, d in enumerate(arr.shape)}, out, 1, False)
    out.append(_CHUNKS_KEY)
    n = len(starts)
    out.append(_FIXMAP[n] if n < 16 else _container_header(0xDE, n))
    for i, start in enumerate(starts):
        out.append(_pack(str(i)))
        _emit_array(flat[start : start + step], out, EXT_NDARRAY, False)


def _container_header(marker16: int, n: int) -> bytes:
    # marker16 is map16 (0xDE) or array16 (0xDC); the 32-bit form is the next byte.
    if n <= 0xFFFF:
        return struct.pack(">BH", marker16, n)
    if n <= 0xFFFFFFFF:
        return struct.pack(">BI", marker16 + 1, n)
    raise SerializationError(f"A container of {n} items is too long for msgpack.")


def _bin_header(n: int) -> bytes:
    if n <= 0xFF:
        return struct.pack(">BB", 0xC4, n)
    if n <= 0xFFFF:
        return struct.pack(">BH", 0xC5, n)
    if n <= 0xFFFFFFFF:
        return struct.pack(">BI", 0xC6, n)
    raise SerializationError(
        f"A {n}-byte buffer is too large for msgpack (limit 4 GiB); arrays this big are "
        "chunked only as dict values or at the top level, not inside lists."
    )


def _ext_header(code: int, n: int) -> bytes:
    fixed = _FIXEXT.get(n)
    if fixed is not None:
        return bytes((fixed, code))
    if n <= 0xFF:
        return struct.pack(">BBB", 0xC7, n, code)
    if n <= 0xFFFF:
        return struct.pack(">BHB", 0xC8, n, code)
    if n <= 0xFFFFFFFF:
        return struct.pack(">BIB", 0xC9, n, code)
    raise SerializationError(f"A {n}-byte array payload is too large for msgpack (limit 4 GiB).")
