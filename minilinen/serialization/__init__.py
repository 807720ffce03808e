"""Serialization: state dicts, and msgpack bytes in Flax's exact wire format.

``to_bytes(tree)`` / ``from_bytes(template, data)`` write and read the bytes Flax
writes and reads; ``to_state_dict`` / ``from_state_dict`` convert between pytrees
(dicts, FrozenDicts, lists, tuples, namedtuples, ``struct`` dataclasses such as
TrainState) and plain nested dicts; ``msgpack_serialize`` / ``msgpack_restore``
work on state dicts directly. Reading is safe on untrusted bytes.
"""

from minilinen.serialization import state_dict
from minilinen.serialization.decode import from_bytes, msgpack_restore
from minilinen.serialization.encode import msgpack_serialize, to_bytes
from minilinen.serialization.state_dict import *  # noqa: F403  (its __all__: the state-dict API)

__all__ = [*state_dict.__all__, "to_bytes", "from_bytes", "msgpack_serialize", "msgpack_restore"]
