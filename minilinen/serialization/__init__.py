"""Serialization: state dicts, and msgpack bytes in Flax's exact wire format.

``to_bytes(tree)`` / ``from_bytes(template, data)`` write and read the bytes Flax
writes and reads; ``to_state_dict`` / ``from_state_dict`` convert between pytrees
(dicts, FrozenDicts, lists, tuples, namedtuples, ``struct`` dataclasses such as
TrainState) and plain nested dicts; ``msgpack_serialize`` / ``msgpack_restore``
work on state dicts directly. Reading is safe on untrusted bytes.
"""

from minilinen.serialization.decode import from_bytes, msgpack_restore
from minilinen.serialization.encode import msgpack_serialize, to_bytes
from minilinen.serialization.state_dict import (
    current_path,
    from_state_dict,
    is_serializable,
    register_serialization_state,
    to_state_dict,
)

__all__ = [
    "to_state_dict",
    "from_state_dict",
    "register_serialization_state",
    "is_serializable",
    "current_path",
    "to_bytes",
    "from_bytes",
    "msgpack_serialize",
    "msgpack_restore",
]
