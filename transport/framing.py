"""Length-prefixed records on a byte stream, with a size limit and a read deadline.

Every record on a connection is a 5-byte header (big-endian u32 payload length,
u8 :class:`Kind`) followed by the payload. The reader refuses a length above its
limit before reading the payload, so a hostile length prefix costs nothing, and
every read of the stream runs under a deadline, so a peer that goes silent
(or a TLS session the other side already rejected) cannot hang a task forever.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import trio

__all__ = ["HEADER", "FrameReader", "Kind", "ProtocolError", "pack_header", "record"]

#: payload length (u32, big endian), kind (u8)
HEADER = struct.Struct(">IB")
_HEADER_SIZE = HEADER.size
#: Largest single read from the socket (bigger records arrive over several reads).
_READ_SIZE = 1 << 18
#: Under :meth:`FrameReader.idle_deadline`, a read waits up to this many times the
#: idle timeout (at least the timeout itself) before it fails.
_IDLE_SLACK = 1.5


class Kind(enum.IntEnum):
    """What a record on a connection holds."""

    HELLO = 1
    WELCOME = 2
    REFUSE = 3
    FRAME = 4
    PING = 5
    PONG = 6
    SNAPSHOT_BEGIN = 7
    SNAPSHOT_CHUNK = 8
    SNAPSHOT_END = 9
    SNAPSHOT_ACK = 10


_KINDS = {k.value: k for k in Kind}


class ProtocolError(Exception):
    """A peer broke the connection protocol; the connection must be closed."""


def pack_header(kind: Kind, payload_size: int) -> bytes:
    """The header announcing ``payload_size`` bytes of ``kind``."""
    return HEADER.pack(payload_size, kind)


def record(kind: Kind, payload: bytes = b"") -> bytes:
    """A whole record: header and payload in one buffer (for small records)."""
    return HEADER.pack(len(payload), kind) + payload


class FrameReader:
    """Reads records from a stream, enforcing a size limit and an idle deadline.

    ``idle_timeout`` bounds the wait for each read of the stream; running out of
    it raises :class:`trio.TooSlowError`. ``max_payload`` can be changed between
    reads (a connection allows small records until its handshake is done).
    """

    __slots__ = (
        "_buf",
        "_idle_scope",
        "_pos",
        "_stream",
        "bytes_read",
        "idle_timeout",
        "max_payload",
    )

    def __init__(self, stream: trio.abc.ReceiveStream, max_payload: int, idle_timeout: float):
        self._stream = stream
        self._buf = bytearray()
        self._pos = 0
        self.max_payload = max_payload
        self.idle_timeout = idle_timeout
        #: Bytes received on the stream so far (for statistics).
        self.bytes_read = 0
        self._idle_scope: trio.CancelScope | None = None

    @contextmanager
    def idle_deadline(self) -> Iterator[None]:
        """Bound the reads inside the block with one deadline, moved out lazily.

        A reader's own deadline per read (``trio.fail_after``) costs a cancel scope
        per read, about 13 us here, twice per frame on a busy connection. Inside
        this block a read instead pushes one shared deadline to
        ``1.5 * idle_timeout`` ahead whenever less than ``idle_timeout`` is left,
        so a read still fails (:class:`trio.TooSlowError`, raised as the block
        exits) after the stream stayed silent between one and one and a half
        idle timeouts, and the deadline moves at most every half timeout.
        """
        scope = trio.CancelScope(deadline=trio.current_time() + self.idle_timeout * _IDLE_SLACK)
        self._idle_scope = scope
        try:
            with scope:
                yield
        finally:
            self._idle_scope = None
        if scope.cancelled_caught:
            raise trio.TooSlowError

    async def _fill(self, need: int) -> bool:
        """Read until ``need`` unread bytes are buffered; False at a clean end of stream."""
        buf = self._buf
        if self._pos:
            del buf[: self._pos]
            self._pos = 0
        while len(buf) < need:
            scope = self._idle_scope
            if scope is None:
                with trio.fail_after(self.idle_timeout):
                    data = await self._stream.receive_some(max(_READ_SIZE, need - len(buf)))
            else:
                now = trio.current_time()
                if scope.deadline - now < self.idle_timeout:
                    scope.deadline = now + self.idle_timeout * _IDLE_SLACK
                data = await self._stream.receive_some(max(_READ_SIZE, need - len(buf)))
            if not data:
                if buf:
                    raise ProtocolError(
                        f"connection closed inside a record ({len(buf)} of {need} bytes)"
                    )
                return False
            self.bytes_read += len(data)
            buf += data
        return True

    async def read(self) -> tuple[Kind, bytes] | None:
        """The next record, or None when the peer closed the stream between records.

        Raises :class:`ProtocolError` for an unknown kind, an oversized length or a
        stream that ends inside a record, :class:`trio.TooSlowError` when a read
        times out, and whatever the stream raises when it breaks.
        """
        buf = self._buf
        if len(buf) - self._pos < _HEADER_SIZE and not await self._fill(_HEADER_SIZE):
            return None
        size, kind_value = HEADER.unpack_from(buf, self._pos)
        kind = _KINDS.get(kind_value)
        if kind is None:
            raise ProtocolError(f"unknown record kind {kind_value}")
        if size > self.max_payload:
            raise ProtocolError(
                f"{kind.name} record of {size} bytes exceeds the limit of {self.max_payload}"
            )
        end = self._pos + _HEADER_SIZE + size
        if len(buf) < end:
            await self._fill(_HEADER_SIZE + size)
            end = _HEADER_SIZE + size
        start = end - size
        with memoryview(buf) as view:
            payload = view[start:end].tobytes()
        self._pos = end
        if end == len(buf):
            buf.clear()
            self._pos = 0
        return kind, payload
