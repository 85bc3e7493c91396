"""Proposal ids inside log entries, and the waiters that receive their outcome.

Every command a node proposes is prefixed by a 16-byte header: the proposing
node's id and a per-node sequence number. When any replica applies the entry,
the node whose id is in the header finds its waiter by the sequence number and
hands it the state machine's result; no other node has such a waiter. The
same header prefixes a conf change's context.
"""

from __future__ import annotations

import struct

import trio

__all__ = ["HEADER_SIZE", "Proposal", "Waiter", "decode_header", "encode_header"]

_HEADER = struct.Struct(">QQ")
#: Bytes of the proposal header.
HEADER_SIZE = _HEADER.size


def encode_header(node_id: int, seq: int) -> bytes:
    """The header naming proposal ``seq`` of ``node_id``."""
    return _HEADER.pack(node_id, seq)


def decode_header(data: bytes) -> tuple[int, int]:
    """``(node_id, seq)`` of a prefixed payload; ``(0, 0)`` when it has no header."""
    if len(data) < HEADER_SIZE:
        return 0, 0
    node_id, seq = _HEADER.unpack_from(data)
    return node_id, seq


class Waiter:
    """A one-shot slot for an outcome that one task waits for."""

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._value: object = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether the outcome is in."""
        return self._done.is_set()

    def set_result(self, value: object) -> None:
        """Deliver a value (ignored if an outcome was already delivered)."""
        if not self._done.is_set():
            self._value = value
            self._done.set()

    def set_error(self, error: BaseException) -> None:
        """Deliver an exception (ignored if an outcome was already delivered)."""
        if not self._done.is_set():
            self._error = error
            self._done.set()

    async def wait(self) -> object:
        """Wait for the outcome: return the value or raise the exception."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Proposal:
    """A command queued for the driver: its payload (header included) and its waiter."""

    __slots__ = ("data", "seq", "waiter")

    def __init__(self, data: bytes, seq: int, waiter: Waiter) -> None:
        self.data = data
        self.seq = seq
        self.waiter = waiter
