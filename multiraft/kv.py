"""A small key-value state machine: put, delete, snapshot and restore.

Commands are :class:`KVCommand` values encoded as a msgpack map
(:func:`KVCommand.to_bytes`; the same bytes the project codec makes of the
class, read and written here without its converter because every command of a
group passes through it); ``apply`` returns the value the key held before
the command (None when absent). Reads are local (:meth:`KVStateMachine.get`):
call ``await node.read(group)`` first for a linearizable read. Used by the
``multiraft node`` process and its tests; the range-splitting store in
``examples/`` is the full-featured one.
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack

from multiraft.codec import CodecError, decode, encode

__all__ = ["KVCommand", "KVStateMachine", "decode_command"]

_OPS = frozenset({"put", "delete"})


def _check_op(_instance: object, _attribute: object, value: str) -> None:
    if value not in _OPS:
        raise ValueError(f"unknown KV operation {value!r} (expected put or delete)")


@attrs.frozen(slots=True)
class KVCommand:
    """``put`` sets ``key`` to ``value``; ``delete`` removes ``key``."""

    op: str = attrs.field(validator=_check_op)
    key: bytes
    value: bytes = b""

    def to_bytes(self) -> bytes:
        """The command as a raft entry's data."""
        out: bytes = _pack({"op": self.op, "key": self.key, "value": self.value})
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> KVCommand:
        """Decode a command (``CodecError``, a ``ValueError``, when malformed)."""
        return cls(*decode_command(data))


def _pack(fields: dict[str, Any]) -> bytes:
    out: bytes = msgpack.packb(fields, use_bin_type=True)
    return out


def decode_command(data: bytes) -> tuple[str, bytes, bytes]:
    """``(op, key, value)`` of an encoded :class:`KVCommand`.

    Raises ``CodecError`` unless ``data`` is a msgpack map with ``op`` ``"put"``
    or ``"delete"``, a bytes ``key`` and (optionally, default empty) a bytes
    ``value``; other keys are ignored.
    """
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # any malformed input maps to one error type
        raise CodecError(f"cannot decode KVCommand: {exc}") from exc
    if type(raw) is not dict:
        raise CodecError(f"cannot decode KVCommand: expected a map, got {type(raw).__name__}")
    op = raw.get("op")
    key = raw.get("key")
    value = raw.get("value", b"")
    if type(op) is not str or op not in _OPS:
        raise CodecError(f"cannot decode KVCommand: unknown KV operation {op!r}")
    if type(key) is not bytes:
        raise CodecError(f"cannot decode KVCommand: key must be bytes, got {type(key).__name__}")
    if type(value) is not bytes:
        raise CodecError(
            f"cannot decode KVCommand: value must be bytes, got {type(value).__name__}"
        )
    return op, key, value


class KVStateMachine:
    """A dict of bytes to bytes, replicated by one raft group."""

    __slots__ = ("applied_index", "data")

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        #: Index of the last command applied (or of the restored snapshot's last command).
        self.applied_index = 0

    def apply(self, index: int, command: bytes) -> bytes | None:
        """Apply one command; return the key's previous value (None if absent)."""
        self.applied_index = index
        op, key, value = decode_command(command)
        data = self.data
        if op == "put":
            previous = data.get(key)
            data[key] = value
            return previous
        return data.pop(key, None)

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` as applied here (None if absent)."""
        return self.data.get(key)

    def snapshot(self) -> bytes:
        """All pairs, sorted by key, plus the applied index."""
        return encode([self.applied_index, sorted(self.data.items())])

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's."""
        index, pairs = decode(data, tuple[int, list[tuple[bytes, bytes]]])
        self.applied_index = index
        self.data = dict(pairs)
