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
_PACKER = msgpack.Packer(use_bin_type=True, strict_types=True, autoreset=True)
_pack = _PACKER.pack
_PLAIN = frozenset({str, bytes, int, float, bool, type(None)})
_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
_LENGTHS = ((0xFF, struct.Struct(">BB")), (0xFFFF, struct.Struct(">BH")))
_LENGTHS += ((0xFFFFFFFF, struct.Struct(">BI")),)
_NOT_CHUNKED = "; arrays this big are chunked only as dict values or at the top level, not in lists"
_CHUNK_HEAD = _PACKER.pack_map_header(3) + _pack(CHUNKED_ARRAY_KEY) + _pack(True)
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
    if depth >= MAX_DEPTH and (t is dict or t is list):
        raise SerializationError(f"The tree is nested deeper than {MAX_DEPTH} levels.")
    if t is dict:
        out.append(_container_header(_PACKER.pack_map_header, len(x)))
        for k, v in _sorted_items(x) if sort_keys else x.items():
            _emit(k, out, depth + 1, False)
            _emit(v, out, depth + 1, True, sort_keys)
    elif t is np.ndarray:
        _emit_array(x, out, EXT_NDARRAY, chunkable)
    elif t in _PLAIN:
        try:
            out.append(_pack(x))
        except (OverflowError, ValueError):  # an int past 64 bits, a str or bytes past 4 GiB
            raise SerializationError(
                f"The {t.__name__} {x!r:.40} is too large for msgpack (integers hold 64 bits, str "
                "and bytes 4 GiB); store it as an array, or split it."
            ) from None
    elif t is list:
        out.append(_container_header(_PACKER.pack_array_header, len(x)))
        for v in x:
            _emit(v, out, depth + 1, False, sort_keys)  # Flax never chunks inside lists
    elif isinstance(x, (np.ndarray, jax.Array)):
        _emit_array(np.asarray(x), out, EXT_NDARRAY, chunkable)
    elif isinstance(x, np.generic):
        _emit_array(np.asarray(x), out, EXT_NPSCALAR, False)
    elif isinstance(x, complex):
        out.append(_pack(msgpack.ExtType(EXT_COMPLEX, _pack([float(x.real), float(x.imag)]))))
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
    bin_head = _length_header(0xC4, nbytes, _NOT_CHUNKED)
    head = b"\x93" + _pack(list(shape)) + _pack(dtype.name) + bin_head
    return _ext_header(code, len(head) + nbytes) + head


def _emit_chunked(arr: np.ndarray, out: list) -> None:
    flat = arr.reshape(-1)
    step = max(1, int(MAX_CHUNK_SIZE // arr.dtype.itemsize))
    starts = range(0, flat.size, step)
    out.append(_CHUNK_HEAD)
    out.append(_SHAPE_KEY)
    _emit({str(i): d for i, d in enumerate(arr.shape)}, out, 1, False)
    out.append(_CHUNKS_KEY)
    out.append(_container_header(_PACKER.pack_map_header, len(starts)))
    for i, start in enumerate(starts):
        out.append(_pack(str(i)))
        _emit_array(flat[start : start + step], out, EXT_NDARRAY, False)


def _container_header(pack_header: Any, n: int) -> bytes:
    try:
        return pack_header(n)
    except ValueError:
        raise SerializationError(f"A container of {n} items is too long for msgpack.") from None


def _length_header(marker8: int, n: int, hint: str = "") -> bytes:
    # marker8 is bin8 (0xC4) or ext8 (0xC7); their 16- and 32-bit forms are the next bytes.
    for i, (limit, fmt) in enumerate(_LENGTHS):
        if n <= limit:
            return fmt.pack(marker8 + i, n)
    raise SerializationError(f"A {n}-byte buffer is too large for msgpack (limit 4 GiB){hint}.")


def _ext_header(code: int, n: int) -> bytes:
    fixed = _FIXEXT.get(n)
    if fixed is not None:
        return bytes((fixed, code))
    return _length_header(0xC7, n, _NOT_CHUNKED) + bytes((code,))
