"""Streaming raft snapshots between nodes, each over a connection of its own.

A snapshot can be far larger than a frame, so it never rides in one: the
sender opens a dedicated connection (HELLO with purpose SNAPSHOT), sends
SNAPSHOT_BEGIN (the raft message with its snapshot data left empty, plus the
data size), the data in SNAPSHOT_CHUNKs cut from a memoryview of the original
bytes (no copy of the whole), and SNAPSHOT_END (size and CRC-32). The receiver
spools the chunks to an unnamed temporary file and reads them back as one
bytes object only once the stream is complete and checked, so the snapshot is
in its memory once, when the node gets it; it then hands the message to the
node and answers SNAPSHOT_ACK. Raft frames keep flowing on the peer's frame
connection meanwhile.

Every snapshot handed to ``submit`` yields exactly one ``SnapshotOutcome``:
FINISH once the receiver acknowledged, FAILURE otherwise.
"""

from __future__ import annotations

import logging
import tempfile
import zlib
from typing import IO

import attrs
import trio

from multiraft.frames import Frame, GroupMessage, SnapshotOutcome
from multiraft.raft.types import Message, MessageType, Snapshot, SnapshotStatus
from transport.counters import TransportCounters
from transport.framing import HEADER, Kind, ProtocolError, pack_header, record
from transport.handshake import CONNECTION_ERRORS, Connection, Dialer, describe_error
from transport.inbox import Inbox
from transport.tcp_config import PeerAddress, TcpTransportConfig
from transport.wire import (
    ConnectionPurpose,
    Hello,
    SnapshotAck,
    SnapshotHeader,
    SnapshotTrailer,
    decode_wire,
    encode_wire,
)

__all__ = ["SnapshotReceiver", "SnapshotSender"]

log = logging.getLogger("multiraft.transport")


def _describe(group_id: int, message: Message, node: int, direction: str) -> str:
    index = message.snapshot.metadata.index if message.snapshot is not None else 0
    return f"snapshot of group {group_id} at index {index} {direction} node {node}"


class SnapshotSender:
    """Sends snapshots, at most ``max_snapshot_sends`` at once for the whole node."""

    __slots__ = ("_counters", "_dialer", "_inbox", "_limiter", "pending")

    def __init__(self, dialer: Dialer, counters: TransportCounters, inbox: Inbox) -> None:
        self._dialer = dialer
        self._counters = counters
        self._inbox = inbox
        self._limiter = trio.CapacityLimiter(dialer.config.max_snapshot_sends)
        #: Snapshots submitted whose outcome is not known yet.
        self.pending = 0

    @property
    def sending(self) -> int:
        """Snapshot streams open right now."""
        return int(self._limiter.borrowed_tokens)

    def submit(
        self,
        nursery: trio.Nursery,
        to_node: int,
        address: PeerAddress,
        group_id: int,
        message: Message,
    ) -> bool:
        """Start sending ``message`` (which carries a snapshot); False if too many are pending."""
        if self.pending >= self._dialer.config.max_pending_snapshots:
            return False
        self.pending += 1
        nursery.start_soon(self._send, to_node, address, group_id, message)
        return True

    async def _send(
        self, to_node: int, address: PeerAddress, group_id: int, message: Message
    ) -> None:
        status = SnapshotStatus.FAILURE
        try:
            async with self._limiter:
                status = await self._stream(to_node, address, group_id, message)
        except CONNECTION_ERRORS as exc:
            log.warning(
                "%s failed: %s", _describe(group_id, message, to_node, "to"), describe_error(exc)
            )
        finally:
            self.pending -= 1
            if status is SnapshotStatus.FINISH:
                self._counters.snapshots_sent += 1
            else:
                self._counters.snapshots_failed += 1
            self._inbox.put_outcome(SnapshotOutcome(group_id, to_node, status))

    async def _stream(
        self, to_node: int, address: PeerAddress, group_id: int, message: Message
    ) -> SnapshotStatus:
        snapshot = message.snapshot
        assert snapshot is not None  # only messages with a snapshot are submitted
        cfg = self._dialer.config
        timeout = cfg.write_timeout
        conn = await self._dialer.connect(to_node, address, ConnectionPurpose.SNAPSHOT)
        try:
            data = snapshot.data
            bare = attrs.evolve(message, snapshot=Snapshot(snapshot.metadata, b""))
            header = SnapshotHeader(group_id, bare, len(data))
            await self._write(conn, record(Kind.SNAPSHOT_BEGIN, encode_wire(header)), timeout)
            crc = 0
            chunk = min(cfg.snapshot_chunk_bytes, cfg.max_frame_bytes)
            with memoryview(data) as view:
                for offset in range(0, len(data), chunk):
                    piece = view[offset : offset + chunk]
                    await self._write(conn, pack_header(Kind.SNAPSHOT_CHUNK, len(piece)), timeout)
                    await self._write(conn, piece, timeout)
                    crc = zlib.crc32(piece, crc)
                    piece.release()
            trailer = SnapshotTrailer(len(data), crc)
            await self._write(conn, record(Kind.SNAPSHOT_END, encode_wire(trailer)), timeout)
            conn.reader.idle_timeout = cfg.snapshot_ack_timeout
            got = await conn.reader.read()
            if got is None:
                raise ProtocolError("receiver closed the connection before acknowledging")
            kind, payload = got
            if kind is not Kind.SNAPSHOT_ACK:
                raise ProtocolError(f"expected SNAPSHOT_ACK, got {kind.name}")
            status = decode_wire(payload, SnapshotAck).status
            if status is SnapshotStatus.FAILURE:
                log.info(
                    "%s: the receiver declined it", _describe(group_id, message, to_node, "to")
                )
            return status
        finally:
            await conn.aclose()

    async def _write(self, conn: Connection, data: bytes | memoryview, timeout: float) -> None:
        await conn.write(data, timeout)
        self._counters.bytes_sent += len(data)


def _open_spool(directory: str | None) -> IO[bytes]:
    return tempfile.TemporaryFile(mode="w+b", dir=directory)


def _read_back(spool: IO[bytes], size: int) -> bytes:
    spool.seek(0)
    data = spool.read(size)
    if len(data) != size:
        raise ProtocolError(f"spooled snapshot has {len(data)} bytes, expected {size}")
    return data


class SnapshotReceiver:
    """Receives snapshots, at most ``max_snapshot_receives`` at once.

    The acceptor takes a slot with :meth:`reserve` while checking the HELLO (a
    busy node refuses the connection before any data flows) and gives it back
    with :meth:`release` when the connection ends.
    """

    __slots__ = ("_config", "_counters", "_inbox", "receiving")

    def __init__(self, config: TcpTransportConfig, counters: TransportCounters, inbox: Inbox):
        self._config = config
        self._counters = counters
        self._inbox = inbox
        #: Snapshot connections holding a slot.
        self.receiving = 0

    def reserve(self) -> bool:
        """Take a receive slot; False when all are taken."""
        if self.receiving >= self._config.max_snapshot_receives:
            return False
        self.receiving += 1
        return True

    def release(self) -> None:
        """Give back a slot taken by :meth:`reserve`."""
        self.receiving -= 1

    async def serve(self, conn: Connection, hello: Hello) -> None:
        """Receive one snapshot stream on ``conn`` and hand it to the node.

        Raises :class:`ProtocolError` (or a codec, timeout or stream error) for a
        stream that breaks the protocol; the caller logs it and closes the connection.
        """
        group_id, message = await self._receive(conn)
        frame = Frame(hello.from_node, self._config.node_id, [GroupMessage(group_id, message)])
        await self._inbox.put_frame(frame)
        self._counters.snapshots_received += 1
        ack = record(Kind.SNAPSHOT_ACK, encode_wire(SnapshotAck(SnapshotStatus.FINISH)))
        await conn.write(ack, self._config.write_timeout)

    async def _receive(self, conn: Connection) -> tuple[int, Message]:
        reader = conn.reader
        got = await reader.read()
        if got is None or got[0] is not Kind.SNAPSHOT_BEGIN:
            raise ProtocolError("expected SNAPSHOT_BEGIN")
        header = decode_wire(got[1], SnapshotHeader)
        message = header.message
        snapshot = message.snapshot
        if message.type is not MessageType.SNAP or snapshot is None or snapshot.data:
            raise ProtocolError("SNAPSHOT_BEGIN must carry a SNAP message without data")
        if header.size > self._config.max_snapshot_bytes:
            raise ProtocolError(
                f"snapshot of {header.size} bytes exceeds the limit of "
                f"{self._config.max_snapshot_bytes}"
            )
        spool = await trio.to_thread.run_sync(_open_spool, self._config.snapshot_spool_dir)
        try:
            received = 0
            crc = 0
            while True:
                got = await reader.read()
                if got is None:
                    raise ProtocolError(f"stream ended after {received} of {header.size} bytes")
                kind, payload = got
                self._counters.bytes_received += len(payload) + HEADER.size
                if kind is Kind.SNAPSHOT_END:
                    break
                if kind is not Kind.SNAPSHOT_CHUNK:
                    raise ProtocolError(f"unexpected {kind.name} record in a snapshot stream")
                received += len(payload)
                if received > header.size:
                    raise ProtocolError(f"snapshot data exceeds the announced {header.size} bytes")
                crc = zlib.crc32(payload, crc)
                await trio.to_thread.run_sync(spool.write, payload)
            trailer = decode_wire(payload, SnapshotTrailer)
            if trailer.size != header.size or received != header.size:
                raise ProtocolError(
                    f"snapshot stream ended after {received} bytes, announced {header.size}"
                )
            if trailer.crc32 != crc:
                raise ProtocolError("snapshot data does not match its CRC-32")
            data = await trio.to_thread.run_sync(_read_back, spool, header.size)
        finally:
            spool.close()
        return header.group_id, attrs.evolve(message, snapshot=Snapshot(snapshot.metadata, data))
