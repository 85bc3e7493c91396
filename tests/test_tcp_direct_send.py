"""A frame offered to an idle plain TCP connection is written at once, not a task step later."""

from __future__ import annotations

import random
import socket

import trio

from tests.tcp_support import app_frame, cluster, quick_config, receive_frame, wait_until
from transport.counters import TransportCounters
from transport.framing import HEADER, Kind
from transport.handshake import Connection, Dialer
from transport.peer import LinkState, PeerLink


async def _writer_idle(link: PeerLink) -> None:
    await wait_until(lambda: link._direct_fd is not None, 5.0, "the writer task waits for work")


async def test_an_idle_connection_takes_the_frame_before_offer_returns() -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        link = a._links[2][0]
        await _writer_idle(link)
        before = a.stats()
        frame = app_frame(1, 2, index=5, payload=b"p" * 300)
        assert a.send(2, frame) is True
        # Written inside send: nothing queued, the counters moved already.
        after = a.stats()
        assert after["queued_bytes"] == 0
        assert not link._queue
        assert after["frames_sent"] == before["frames_sent"] + 1
        assert after["bytes_sent"] > before["bytes_sent"] + 300
        assert await receive_frame(b) == frame
        # Frames sent back to back arrive whole and in order.
        frames = [app_frame(1, 2, index=i, payload=bytes([i]) * 50) for i in range(6, 26)]
        for f in frames:
            assert a.send(2, f) is True
        assert [await receive_frame(b) for _ in frames] == frames


async def test_only_a_plain_socket_stream_is_written_to_directly() -> None:
    a, _b = trio.testing.memory_stream_pair()
    conn = Connection(a, None, 2, "memory")  # type: ignore[arg-type]
    assert conn.socket_fd() is None
    left, right = trio.socket.socketpair()
    with left, right:
        plain = Connection(trio.SocketStream(left), None, 2, "pair")  # type: ignore[arg-type]
        assert plain.socket_fd() == left.fileno()


def _link_on(fd: int) -> PeerLink:
    config = quick_config(1, send_queue_bytes=64 << 20)
    link = PeerLink(2, ("127.0.0.1", 1), Dialer(config), TransportCounters(), random.Random(1))
    link.state = LinkState.CONNECTED
    link._direct_fd = fd
    return link


def test_what_the_socket_does_not_take_at_once_waits_in_the_queue_in_one_piece() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        link = _link_on(ours.fileno())
        payload = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes
        assert link.offer([payload]) is True
        assert len(link._queue) == 1
        header, rest = link._queue[0]
        # The rest carries no header of its own: it continues the record begun.
        assert header == b""
        assert 0 < len(rest) < len(payload)
        assert link.queued_bytes == len(rest)
        assert link._counters.frames_sent == 1
        written = theirs.recv(len(payload) + HEADER.size, socket.MSG_DONTWAIT)
        while len(written) < HEADER.size + len(payload) - len(rest):
            written += theirs.recv(len(payload), socket.MSG_DONTWAIT)
        assert written + rest == HEADER.pack(len(payload), Kind.FRAME) + payload
        assert link._counters.bytes_sent == len(written)
        # With something queued, the next frame queues behind it, header and all.
        assert link.offer([b"next"]) is True
        assert link._queue[1] == (HEADER.pack(4, Kind.FRAME), b"next")


def test_a_broken_socket_hands_the_frame_to_the_writer_task() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        ours.setblocking(False)
        theirs.close()
        link = _link_on(ours.fileno())
        assert link.offer([b"frame"]) is True
        # The writer task meets the error on its own write and closes the connection.
        assert link._direct_fd is None
        assert link._queue[0][1].endswith(b"frame")
        assert link.queued_bytes == HEADER.size + 5
