"""Opening a connection between two nodes: TCP, optional TLS, then HELLO and WELCOME.

The dialer sends HELLO (protocol version, cluster id, its node id, the node id
it means to reach, and what the connection is for). The acceptor answers
WELCOME, or REFUSE with the reason and closes. A connection is usable only
after this round trip, within ``handshake_timeout`` from the first byte: under
TLS 1.3 a client whose certificate the server rejected only notices on a read,
and that read is the WELCOME it never gets.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

import attrs
import trio

from multiraft.codec import CodecError
from transport.framing import FrameReader, Kind, ProtocolError, record
from transport.tcp_config import PeerAddress, TcpTransportConfig
from transport.tls import client_context, wrap_client
from transport.wire import (
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Hello,
    Refusal,
    Welcome,
    decode_wire,
    encode_wire,
)

__all__ = [
    "CONNECTION_ERRORS",
    "Connection",
    "Dialer",
    "HandshakeError",
    "PeerRefusedError",
    "accept_hello",
    "describe_error",
    "hello_mismatch",
]

log = logging.getLogger("multiraft.transport")

#: Failures that end one connection but never the transport.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
    ssl.SSLError,
    ProtocolError,
    CodecError,
)


def describe_error(exc: BaseException) -> str:
    """A log-worthy reason for a connection failure (trio wraps TLS errors without text)."""
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if not text and cause is not None:
        text = str(cause)
    return text or type(exc).__name__


class HandshakeError(ProtocolError):
    """The other side is not the peer this node expected."""


class PeerRefusedError(HandshakeError):
    """The acceptor refused our HELLO; ``reason`` says what did not match."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.define(slots=True, eq=False)
class Connection:
    """An established connection to ``peer_id``, past its handshake."""

    stream: trio.abc.Stream
    reader: FrameReader
    peer_id: int
    remote: str

    def socket_fd(self) -> int | None:
        """The descriptor of a plain TCP connection's socket, to write to it without
        blocking (None for TLS, whose records only the stream may write)."""
        stream = self.stream
        if isinstance(stream, trio.SocketStream):
            return stream.socket.fileno()
        return None

    async def write(self, data: bytes | memoryview, timeout: float) -> None:
        """Write ``data`` whole, or raise :class:`trio.TooSlowError` after ``timeout``."""
        with trio.fail_after(timeout):
            await self.stream.send_all(data)

    async def aclose(self) -> None:
        """Close at once, without waiting for the peer."""
        await trio.aclose_forcefully(self.stream)


def hello_mismatch(
    hello: Hello, config: TcpTransportConfig, check_peer: Callable[[Hello], str]
) -> str:
    """Why ``hello`` must be refused ("" when it is acceptable).

    After version, cluster id and the dialed node id, ``check_peer(hello)`` says
    why that peer may not open this connection now ("" when it may).
    """
    if hello.version not in SUPPORTED_VERSIONS:
        return (
            f"unsupported protocol version {hello.version} "
            f"(this node speaks {sorted(SUPPORTED_VERSIONS)})"
        )
    if hello.cluster_id != config.cluster_id:
        return (
            f"cluster id mismatch: peer is in cluster {hello.cluster_id!r}, "
            f"this node is in {config.cluster_id!r}"
        )
    if hello.to_node != config.node_id:
        return f"node id mismatch: peer dialed node {hello.to_node}, this is node {config.node_id}"
    return check_peer(hello)


async def accept_hello(
    stream: trio.abc.Stream,
    reader: FrameReader,
    config: TcpTransportConfig,
    check_peer: Callable[[Hello], str],
) -> Hello:
    """Read the dialer's HELLO and answer it (the caller bounds the time).

    Raises :class:`PeerRefusedError` after sending REFUSE when it does not match.
    """
    got = await reader.read()
    if got is None:
        raise ProtocolError("connection closed before HELLO")
    kind, payload = got
    if kind is not Kind.HELLO:
        raise ProtocolError(f"expected HELLO, got {kind.name}")
    hello = decode_wire(payload, Hello)
    reason = hello_mismatch(hello, config, check_peer)
    if reason:
        await stream.send_all(record(Kind.REFUSE, encode_wire(Refusal(reason))))
        raise PeerRefusedError(reason)
    welcome = Welcome(PROTOCOL_VERSION, config.cluster_id, config.node_id)
    await stream.send_all(record(Kind.WELCOME, encode_wire(welcome)))
    return hello


class Dialer:
    """Opens handshaken connections to peer nodes."""

    __slots__ = ("_tls_context", "config")

    def __init__(self, config: TcpTransportConfig) -> None:
        self.config = config
        self._tls_context = None if config.tls is None else client_context(config.tls)

    async def connect(self, peer_id: int, address: PeerAddress, purpose: int) -> Connection:
        """Dial ``peer_id`` at ``address`` and complete the handshake for ``purpose``.

        Raises one of :data:`CONNECTION_ERRORS` on failure (:class:`PeerRefusedError`
        when the peer refused, :class:`trio.TooSlowError` past ``handshake_timeout``).
        """
        cfg = self.config
        host, port = address
        remote = f"{host}:{port}"
        with trio.fail_after(cfg.handshake_timeout):
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            try:
                if self._tls_context is not None:
                    stream = await wrap_client(stream, self._tls_context, host)
                reader = FrameReader(stream, cfg.max_handshake_bytes, cfg.handshake_timeout)
                hello = Hello(PROTOCOL_VERSION, cfg.cluster_id, cfg.node_id, peer_id, purpose)
                await stream.send_all(record(Kind.HELLO, encode_wire(hello)))
                await self._expect_welcome(reader, peer_id)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        reader.max_payload = cfg.max_frame_bytes
        reader.idle_timeout = cfg.idle_timeout
        return Connection(stream, reader, peer_id, remote)

    async def _expect_welcome(self, reader: FrameReader, peer_id: int) -> None:
        got = await reader.read()
        if got is None:
            raise ProtocolError("peer closed the connection during the handshake")
        kind, payload = got
        if kind is Kind.REFUSE:
            raise PeerRefusedError(decode_wire(payload, Refusal).reason)
        if kind is not Kind.WELCOME:
            raise ProtocolError(f"expected WELCOME, got {kind.name}")
        welcome = decode_wire(payload, Welcome)
        cfg = self.config
        if welcome.version not in SUPPORTED_VERSIONS:
            raise HandshakeError(f"peer answered with unsupported version {welcome.version}")
        if welcome.cluster_id != cfg.cluster_id:
            raise HandshakeError(
                f"cluster id mismatch: peer is in cluster {welcome.cluster_id!r}, "
                f"this node is in {cfg.cluster_id!r}"
            )
        if welcome.node_id != peer_id:
            raise HandshakeError(
                f"node id mismatch: expected node {peer_id}, node {welcome.node_id} answered"
            )
