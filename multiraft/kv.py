"""A small key-value state machine: put, delete, snapshot and restore.

Commands are :class:`KVCommand` values encoded with the project codec
(:func:`KVCommand.to_bytes`); ``apply`` returns the value the key held before
the command (None when absent). Reads are local (:meth:`KVStateMachine.get`):
call ``await node.read(group)`` first for a linearizable read. Used by the
``multiraft node`` process and its tests; the range-splitting store in
``examples/`` is the full-featured one.
"""

from __future__ import annotations

import attrs

from multiraft.codec import decode, encode

__all__ = ["KVCommand", "KVStateMachine"]

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
        return encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> KVCommand:
        """Decode a command (``CodecError`` or ``ValueError`` when malformed)."""
        return decode(data, cls)


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
        cmd = KVCommand.from_bytes(command)
        if cmd.op == "put":
            previous = self.data.get(cmd.key)
            self.data[cmd.key] = cmd.value
            return previous
        return self.data.pop(cmd.key, None)

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
