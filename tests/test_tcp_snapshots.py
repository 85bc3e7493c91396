"""Snapshot streaming over TCP: chunked delivery, outcomes, limits, broken streams."""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Awaitable, Callable

import pytest
import trio

from multiraft.frames import Frame, GroupMessage, SnapshotOutcome
from multiraft.raft.types import (
    ConfState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
)
from tests.tcp_support import (
    RawPeer,
    app_frame,
    cluster,
    quick_config,
    receive_frame,
    receive_outcome,
    transport_logs,
    wait_until,
)
from transport.framing import FrameReader, Kind, pack_header, record
from transport.peer import LinkState
from transport.tcp import TcpTransport
from transport.wire import (
    ConnectionPurpose,
    Hello,
    SnapshotAck,
    SnapshotHeader,
    SnapshotTrailer,
    Welcome,
    decode_wire,
    encode_wire,
)

SnapshotHandler = Callable[[trio.SocketStream, FrameReader], Awaitable[None]]


def snap_message(group_id: int, size: int, index: int = 50, fill: int = 7) -> GroupMessage:
    data = bytes((fill + i) % 256 for i in range(min(size, 256))) * (size // 256 + 1)
    snapshot = Snapshot(SnapshotMetadata(ConfState(voters=(1, 2)), index, 4), data[:size])
    m = Message(MessageType.SNAP, to=2, from_=1, term=4, snapshot=snapshot)
    return GroupMessage(group_id, m)


class FakeNode:
    """A listener that speaks the handshake as node ``node_id`` and hands snapshot streams
    to ``on_snapshot``; frame connections just get their keepalives answered."""

    def __init__(self, node_id: int, on_snapshot: SnapshotHandler) -> None:
        self.node_id = node_id
        self.on_snapshot = on_snapshot
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        reader = FrameReader(stream, 1 << 22, 10.0)
        try:
            got = await reader.read()
            assert got is not None and got[0] is Kind.HELLO
            hello = decode_wire(got[1], Hello)
            welcome = Welcome(1, "test-cluster", self.node_id)
            await stream.send_all(record(Kind.WELCOME, encode_wire(welcome)))
            if hello.purpose == ConnectionPurpose.SNAPSHOT:
                await self.on_snapshot(stream, reader)
                return
            while (got := await reader.read()) is not None:
                if got[0] is Kind.PING:
                    await stream.send_all(record(Kind.PONG))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def test_snapshot_streams_in_chunks_and_the_sender_gets_finish() -> None:
    size = 5 * 1024 * 1024 + 123
    cfg_a = quick_config(1, snapshot_chunk_bytes=256 * 1024)
    async with cluster(cfg_a, quick_config(2)) as (a, b):
        snap = snap_message(7, size)
        other = app_frame(1, 2, group_id=8).messages[0]
        assert a.send(2, Frame(1, 2, [other, snap])) is True
        # The rest of the frame is not held up behind the snapshot.
        assert (await receive_frame(b)).messages == [other]
        delivered = await receive_frame(b, timeout=10)
        assert delivered == Frame(1, 2, [snap])
        assert await receive_outcome(a) == SnapshotOutcome(7, 2, SnapshotStatus.FINISH)
        assert a.stats()["snapshots_sent"] == 1
        assert a.stats()["snapshots_pending"] == 0
        assert b.stats()["snapshots_received"] == 1
        # 21 chunks of 256 KiB: the data went over the wire once.
        assert size <= b.stats()["bytes_received"] < size + 4096


async def test_empty_snapshot_data_is_delivered_too() -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        snap = snap_message(3, 0)
        assert a.send(2, Frame(1, 2, [snap])) is True
        assert await receive_frame(b) == Frame(1, 2, [snap])
        assert await receive_outcome(a) == SnapshotOutcome(3, 2, SnapshotStatus.FINISH)


async def test_receiver_dying_mid_stream_reports_failure(caplog: pytest.LogCaptureFixture) -> None:
    chunks_seen: list[int] = []

    async def die_after_one_chunk(stream: trio.SocketStream, reader: FrameReader) -> None:
        got = await reader.read()
        assert got is not None and got[0] is Kind.SNAPSHOT_BEGIN
        got = await reader.read()
        assert got is not None and got[0] is Kind.SNAPSHOT_CHUNK
        chunks_seen.append(len(got[1]))

    fake = FakeNode(2, die_after_one_chunk)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.run)
        cfg = quick_config(1, snapshot_chunk_bytes=64 * 1024, peers={2: ("127.0.0.1", fake.port)})
        async with cluster(cfg, connect=False) as (a,):
            await wait_until(lambda: a.peer_state(2) is LinkState.CONNECTED, 5.0, "connected")
            assert a.send(2, Frame(1, 2, [snap_message(7, 4 * 1024 * 1024)])) is True
            assert await receive_outcome(a) == SnapshotOutcome(7, 2, SnapshotStatus.FAILURE)
            assert chunks_seen == [64 * 1024]
            assert a.stats()["snapshots_failed"] == 1
            assert a.stats()["snapshots_sent"] == 0
        nursery.cancel_scope.cancel()
    assert any(
        m.startswith("snapshot of group 7 at index 50 to node 2 failed: ")
        for m in transport_logs(caplog)
    )


async def test_receiver_declining_reports_failure() -> None:
    async def decline(stream: trio.SocketStream, reader: FrameReader) -> None:
        ack = SnapshotAck(SnapshotStatus.FAILURE)
        await stream.send_all(record(Kind.SNAPSHOT_ACK, encode_wire(ack)))

    fake = FakeNode(2, decline)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.run)
        cfg = quick_config(1, peers={2: ("127.0.0.1", fake.port)})
        async with cluster(cfg, connect=False) as (a,):
            await wait_until(lambda: a.peer_state(2) is LinkState.CONNECTED, 5.0, "connected")
            assert a.send(2, Frame(1, 2, [snap_message(7, 1000)])) is True
            assert await receive_outcome(a) == SnapshotOutcome(7, 2, SnapshotStatus.FAILURE)
        nursery.cancel_scope.cancel()


async def test_at_most_max_snapshot_sends_stream_at_once() -> None:
    open_now = 0
    most = 0
    received: list[int] = []

    async def slow_receiver(stream: trio.SocketStream, reader: FrameReader) -> None:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        try:
            got = await reader.read()
            assert got is not None
            header = decode_wire(got[1], SnapshotHeader)
            while (got := await reader.read()) is not None and got[0] is not Kind.SNAPSHOT_END:
                pass
            await trio.sleep(0.1)
            received.append(header.group_id)
            ack = SnapshotAck(SnapshotStatus.FINISH)
            await stream.send_all(record(Kind.SNAPSHOT_ACK, encode_wire(ack)))
        finally:
            open_now -= 1

    fake = FakeNode(2, slow_receiver)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.run)
        cfg = quick_config(1, max_snapshot_sends=2, peers={2: ("127.0.0.1", fake.port)})
        async with cluster(cfg, connect=False) as (a,):
            await wait_until(lambda: a.peer_state(2) is LinkState.CONNECTED, 5.0, "connected")
            assert a.send(2, Frame(1, 2, [snap_message(g, 10_000) for g in range(1, 6)])) is True
            outcomes = [await receive_outcome(a) for _ in range(5)]
            assert sorted(o.group_id for o in outcomes) == [1, 2, 3, 4, 5]
            assert {o.status for o in outcomes} == {SnapshotStatus.FINISH}
            assert most == 2
            assert sorted(received) == [1, 2, 3, 4, 5]
        nursery.cancel_scope.cancel()


async def test_snapshots_beyond_the_pending_limit_fail_at_once() -> None:
    async def never_ack(stream: trio.SocketStream, reader: FrameReader) -> None:
        await trio.sleep_forever()

    fake = FakeNode(2, never_ack)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.run)
        cfg = quick_config(
            1, max_snapshot_sends=1, max_pending_snapshots=2, peers={2: ("127.0.0.1", fake.port)}
        )
        async with cluster(cfg, connect=False) as (a,):
            await wait_until(lambda: a.peer_state(2) is LinkState.CONNECTED, 5.0, "connected")
            frame = Frame(1, 2, [snap_message(g, 100) for g in (1, 2, 3, 4)])
            assert a.send(2, frame) is True
            # Groups 3 and 4 found both pending slots taken.
            assert await receive_outcome(a, 1.0) == SnapshotOutcome(3, 2, SnapshotStatus.FAILURE)
            assert await receive_outcome(a, 1.0) == SnapshotOutcome(4, 2, SnapshotStatus.FAILURE)
            assert a.stats()["snapshots_pending"] == 2
        nursery.cancel_scope.cancel()


async def test_snapshot_to_a_peer_that_is_down_is_refused_by_send() -> None:
    async with cluster(quick_config(1), connect=False) as (a,):
        a.set_peer(2, "127.0.0.1", 1)
        await wait_until(lambda: a.peer_state(2) is LinkState.DOWN, 5.0, "down")
        assert a.send(2, Frame(1, 2, [snap_message(7, 100)])) is False
        assert a.stats()["snapshots_pending"] == 0
        with trio.move_on_after(0.2):
            await a.receive()
            raise AssertionError("no outcome may follow a refused send")


# -------------------------------------------------------------- receiving side


async def _raw_snapshot_stream(port: int) -> RawPeer:
    raw = await RawPeer.connect(port)
    kind, _ = await raw.hello(1, 2, purpose=ConnectionPurpose.SNAPSHOT)
    assert kind is Kind.WELCOME
    return raw


def _begin(group_id: int, size: int) -> bytes:
    bare = snap_message(group_id, 0).message
    return record(Kind.SNAPSHOT_BEGIN, encode_wire(SnapshotHeader(group_id, bare, size)))


def _chunk(data: bytes) -> bytes:
    return pack_header(Kind.SNAPSHOT_CHUNK, len(data)) + data


def _end(size: int, crc: int) -> bytes:
    return record(Kind.SNAPSHOT_END, encode_wire(SnapshotTrailer(size, crc)))


async def _expect_rejected_stream(
    b: TcpTransport, data: bytes, caplog: pytest.LogCaptureFixture, complaint: str
) -> None:
    raw = await _raw_snapshot_stream(b.listen_port)
    await raw.send(data)
    await raw.stream.send_eof()  # type: ignore[attr-defined]
    assert await raw.closed_by_peer()
    await raw.aclose()
    assert b.stats()["snapshots_received"] == 0
    assert b.stats()["inbox_items"] == 0
    lines = [m for m in transport_logs(caplog) if "closing the connection from node 1" in m]
    assert lines and lines[-1].endswith(complaint), transport_logs(caplog)


async def test_truncated_snapshot_stream_is_discarded_and_the_next_one_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        await _expect_rejected_stream(
            b, _begin(7, 1000) + _chunk(b"x" * 400), caplog, "stream ended after 400 of 1000 bytes"
        )
        snap = snap_message(7, 1000)
        assert a.send(2, Frame(1, 2, [snap])) is True
        assert await receive_frame(b) == Frame(1, 2, [snap])


async def test_snapshot_with_a_wrong_checksum_is_discarded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with cluster(quick_config(1), quick_config(2)) as (_a, b):
        data = b"y" * 300
        stream = _begin(7, 300) + _chunk(data) + _end(300, zlib.crc32(data) ^ 1)
        await _expect_rejected_stream(b, stream, caplog, "snapshot data does not match its CRC-32")


async def test_snapshot_longer_than_announced_is_discarded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with cluster(quick_config(1), quick_config(2)) as (_a, b):
        stream = _begin(7, 100) + _chunk(b"z" * 101)
        await _expect_rejected_stream(
            b, stream, caplog, "snapshot data exceeds the announced 100 bytes"
        )


async def test_snapshot_over_the_size_limit_is_refused_before_any_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg_b = quick_config(2, max_snapshot_bytes=1000)
    async with cluster(quick_config(1), cfg_b) as (_a, b):
        await _expect_rejected_stream(
            b,
            _begin(7, 1001),
            caplog,
            "snapshot of 1001 bytes exceeds the limit of 1000",
        )


async def test_receiver_declines_snapshots_beyond_its_receive_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg_b = quick_config(2, max_snapshot_receives=1, idle_timeout=10.0)
    async with cluster(quick_config(1), cfg_b) as (a, b):
        hog = await _raw_snapshot_stream(b.listen_port)
        await hog.send(_begin(9, 1000))  # opened, never finished
        await trio.sleep(0.05)
        assert a.send(2, Frame(1, 2, [snap_message(7, 100)])) is True
        assert await receive_outcome(a) == SnapshotOutcome(7, 2, SnapshotStatus.FAILURE)
        await hog.aclose()
        assert a.send(2, Frame(1, 2, [snap_message(7, 100)])) is True
        await receive_frame(b)
        assert await receive_outcome(a) == SnapshotOutcome(7, 2, SnapshotStatus.FINISH)
    reason = "node 2 is already receiving 1 snapshots"
    logs = transport_logs(caplog)
    assert any(m.startswith("refused a connection from 127.0.0.1:") and reason in m for m in logs)
    assert f"snapshot of group 7 at index 50 to node 2 failed: {reason}" in logs


async def test_a_snapshot_is_held_once_by_the_receiver_not_once_per_chunk_plus_once_whole() -> None:
    size = 16 * 1024 * 1024
    cfg_a = quick_config(1, snapshot_chunk_bytes=1024 * 1024)
    async with cluster(cfg_a, quick_config(2)) as (a, b):
        snap = snap_message(7, size)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            assert a.send(2, Frame(1, 2, [snap])) is True
            delivered = await receive_frame(b, timeout=20)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert delivered == Frame(1, 2, [snap])
        # The sender cuts chunks from a view of its bytes and the receiver spools
        # them to a file: the only whole copy made is the one delivered. Gathering
        # chunks in memory and joining them would peak at twice the size.
        assert size <= peak < size * 1.5, peak
