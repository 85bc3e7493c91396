"""Helpers for TCP transport tests: quick configs, connected transports, raw peers, waiting."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio

from multiraft.frames import Frame, GroupMessage, HeartbeatRecord, SnapshotOutcome
from multiraft.raft.types import Entry, Message, MessageType
from transport.framing import FrameReader, Kind, record
from transport.tcp import TcpTransport, TcpTransportConfig, open_tcp_transport
from transport.wire import PROTOCOL_VERSION, ConnectionPurpose, Hello, encode_wire

__all__ = [
    "RawPeer",
    "app_frame",
    "cluster",
    "quick_config",
    "receive_frame",
    "transport_logs",
    "wait_until",
]

LOGGER = "multiraft.transport"


def quick_config(node_id: int, **overrides: Any) -> TcpTransportConfig:
    """A config with short timeouts so failure paths finish within a test's budget."""
    settings: dict[str, Any] = {
        "node_id": node_id,
        "cluster_id": "test-cluster",
        "handshake_timeout": 2.0,
        "keepalive_interval": 0.2,
        "idle_timeout": 2.0,
        "write_timeout": 2.0,
        "reconnect_initial": 0.02,
        "reconnect_max": 0.2,
        "seed": node_id,
    }
    settings.update(overrides)
    return TcpTransportConfig(**settings)


@asynccontextmanager
async def cluster(
    *configs: TcpTransportConfig, connect: bool = True
) -> AsyncIterator[list[TcpTransport]]:
    """Open one transport per config; with ``connect`` every one gets every other as a peer."""
    async with AsyncExitStack() as stack:
        transports = [await stack.enter_async_context(open_tcp_transport(c)) for c in configs]
        if connect:
            for t in transports:
                for other in transports:
                    if other is not t:
                        t.set_peer(other.node_id, "127.0.0.1", other.listen_port)
            for t in transports:
                await wait_until(
                    lambda t=t: len(t.connected_peers()) == len(transports) - 1,
                    5.0,
                    f"node {t.node_id} connected to every peer",
                )
        yield transports


def app_frame(src: int, dst: int, group_id: int = 7, index: int = 1, payload: bytes = b"") -> Frame:
    """A frame with one APP message (one entry) and one heartbeat record."""
    m = Message(
        MessageType.APP,
        to=dst,
        from_=src,
        term=3,
        log_term=3,
        index=index - 1,
        entries=(Entry(3, index, data=payload),),
        commit=index - 1,
    )
    hb = HeartbeatRecord(group_id + 1, src, dst, 3, index - 1)
    return Frame(src, dst, [GroupMessage(group_id, m)], [hb], [])


async def receive_frame(t: TcpTransport, timeout: float = 5.0) -> Frame:
    """The next item of ``t``, which must be a frame."""
    with trio.fail_after(timeout):
        item = await t.receive()
    assert isinstance(item, Frame), item
    return item


async def receive_outcome(t: TcpTransport, timeout: float = 10.0) -> SnapshotOutcome:
    """The next item of ``t``, which must be a snapshot outcome."""
    with trio.fail_after(timeout):
        item = await t.receive()
    assert isinstance(item, SnapshotOutcome), item
    return item


async def wait_until(cond: Callable[[], bool], timeout: float, what: str = "condition") -> None:
    """Poll ``cond`` every 10 ms; fail the test if it stays false for ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while not cond():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"{what} not reached within {timeout}s")


def transport_logs(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    """Messages the transport logged at ``level`` or above."""
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= level]


class RawPeer:
    """A hand-driven client connection, for speaking (or breaking) the protocol directly."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = FrameReader(stream, 1 << 20, 5.0)

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        """Open a plain TCP connection to 127.0.0.1:``port``."""
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def hello(
        self,
        from_node: int,
        to_node: int,
        cluster_id: str = "test-cluster",
        version: int = PROTOCOL_VERSION,
        purpose: int = ConnectionPurpose.FRAMES,
    ) -> tuple[Kind, bytes]:
        """Send a HELLO and return the answer record."""
        hello = Hello(version, cluster_id, from_node, to_node, purpose)
        await self.stream.send_all(record(Kind.HELLO, encode_wire(hello)))
        got = await self.reader.read()
        assert got is not None, "acceptor closed without answering HELLO"
        return got

    async def send(self, data: bytes) -> None:
        """Write raw bytes."""
        await self.stream.send_all(data)

    async def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """Whether the other side closes the connection within ``timeout`` (records ignored)."""
        with trio.move_on_after(timeout):
            try:
                while await self.stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError:
                pass
            return True
        return False

    async def aclose(self) -> None:
        """Close the connection."""
        await trio.aclose_forcefully(self.stream)
