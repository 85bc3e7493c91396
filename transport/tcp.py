"""The TCP adapter of the coordinator's ``Transport`` port, on trio.

One node, one :class:`TcpTransport`: it listens for its peers and dials each
of them. All groups share one connection per direction and peer: a node sends
its frames on the connection it dialed and reads the peer's frames from the
connection the peer dialed (see :mod:`transport.peer`). Records are
length-prefixed (:mod:`transport.framing`), frames are encoded once per send in
the compact wire layout (:mod:`transport.wire`), every connection starts with a
handshake checking protocol version, cluster id and node ids
(:mod:`transport.handshake`), optionally inside mutual TLS 1.3
(:mod:`transport.tls`), and snapshots stream in chunks over connections of
their own (:mod:`transport.snapshots`).

Anything wrong on one connection (bytes that do not decode, oversized or
truncated records, wrong field types, a peer that stops talking) closes that
connection with a log line on the ``multiraft.transport`` logger; every other
connection and the node carry on.

Use it through :func:`open_tcp_transport`, which owns the transport's tasks::

    config = TcpTransportConfig(node_id=1, peers={2: ("10.0.0.2", 7000)})
    async with open_tcp_transport(config) as t:
        async with open_node(NodeConfig(1), transport=t) as node:
            ...
"""

from __future__ import annotations

import errno
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from multiraft.codec import CodecError
from multiraft.frames import Frame, SnapshotOutcome
from multiraft.raft.types import SnapshotStatus
from transport.counters import TransportCounters
from transport.framing import HEADER, FrameReader, Kind, ProtocolError, record
from transport.handshake import (
    CONNECTION_ERRORS,
    Connection,
    Dialer,
    PeerRefusedError,
    accept_hello,
    describe_error,
)
from transport.inbox import Inbox
from transport.peer import LinkState, PeerLink
from transport.snapshots import SnapshotReceiver, SnapshotSender
from transport.tcp_config import PeerAddress, TcpTransportConfig
from transport.tls import server_context, wrap_server
from transport.wire import ConnectionPurpose, Hello, decode_frame, encode_frame

__all__ = ["TcpTransport", "TcpTransportConfig", "open_tcp_transport"]

log = logging.getLogger("multiraft.transport")

_PONG = record(Kind.PONG)
_HEADER_SIZE = HEADER.size
#: accept() failures that mean "out of resources for now", not "listener broken".
_TRANSIENT_ACCEPT_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _remote_name(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "an unknown address"
    return f"{host}:{port}"


def _halves(frame: Frame) -> tuple[Frame, Frame]:
    """Split a frame's records into two frames of about half as many records."""
    m, h, r = frame.messages, frame.heartbeats, frame.heartbeat_responses
    half = (len(m) + len(h) + len(r)) // 2
    a = min(len(m), half)
    b = min(len(h), half - a)
    c = half - a - b
    f, t = frame.from_node, frame.to_node
    return Frame(f, t, m[:a], h[:b], r[:c]), Frame(f, t, m[a:], h[b:], r[c:])


class TcpTransport:
    """A node's connections to its peers (implements the ``Transport`` port).

    Created by :func:`open_tcp_transport`. ``send`` encodes the frame and queues
    it on the peer's link, never waiting; ``receive`` returns frames from peers
    and outcomes of snapshots this node sent.
    """

    def __init__(self, config: TcpTransportConfig, listeners: list[trio.SocketListener]) -> None:
        self.config = config
        self.node_id = config.node_id
        self._listeners = listeners
        self._counters = TransportCounters()
        self._inbox = Inbox(config.inbox_frames)
        self._dialer = Dialer(config)
        self._server_tls = None if config.tls is None else server_context(config.tls)
        self._rng = random.Random(config.seed)
        self._peers: dict[int, PeerAddress] = dict(config.peers)
        self._blocked: set[int] = set()
        self._links: dict[int, tuple[PeerLink, trio.CancelScope]] = {}
        self._inbound: dict[int, trio.CancelScope] = {}
        self._snapshot_sender = SnapshotSender(self._dialer, self._counters, self._inbox)
        self._snapshot_receiver = SnapshotReceiver(config, self._counters, self._inbox)
        self._connection_slots = trio.Semaphore(config.max_inbound_connections)
        self._nursery: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None
        self._closed = False

    # ------------------------------------------------------------------ port

    def send(self, to_node: int, frame: Frame) -> bool:
        """Queue ``frame`` for ``to_node``; False when it was dropped at once.

        Dropped: unknown or blocked peer, peer down, its send queue over budget,
        transport closed, or a frame that cannot be encoded. Snapshot messages
        in the frame are streamed separately; each yields one
        :class:`SnapshotOutcome` from :meth:`receive` when this returns True.
        """
        entry = self._links.get(to_node)
        if entry is None or self._closed:
            self._counters.frames_dropped += 1
            return False
        link = entry[0]
        if frame.has_snapshot():
            return self._send_with_snapshots(link, frame)
        return self._offer(link, frame)

    async def receive(self) -> Frame | SnapshotOutcome:
        """The next frame from a peer or snapshot outcome; ``EndOfChannel`` once closed."""
        return await self._inbox.get()

    async def aclose(self) -> None:
        """Close every connection and stop every task of the transport (idempotent).

        Tasks end when the enclosing :func:`open_tcp_transport` block exits.
        """
        if not self._closed:
            self._closed = True
            self._inbox.close()
            for link, scope in self._links.values():
                link.close()
                scope.cancel()
            if self._scope is not None:
                self._scope.cancel()
        await trio.lowlevel.checkpoint()

    # ------------------------------------------------------------- inspection

    @property
    def listen_address(self) -> PeerAddress:
        """The (host, port) this node listens on (the real port when configured as 0)."""
        host, port = self._listeners[0].socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def listen_port(self) -> int:
        """The port this node listens on."""
        return self.listen_address[1]

    def peer_state(self, node_id: int) -> LinkState | None:
        """State of the outbound link to ``node_id`` (None: not a peer, or blocked)."""
        entry = self._links.get(node_id)
        return None if entry is None else entry[0].state

    def connected_peers(self) -> set[int]:
        """Peers whose outbound connection is established."""
        return {n for n, (link, _) in self._links.items() if link.state is LinkState.CONNECTED}

    def stats(self) -> dict[str, int]:
        """Counters (monotonic) plus current gauges: queued bytes, connected peers, ..."""
        out = self._counters.as_dict()
        out["queued_bytes"] = sum(link.queued_bytes for link, _ in self._links.values())
        out["peers_connected"] = len(self.connected_peers())
        out["inbound_connections"] = len(self._inbound)
        out["snapshots_pending"] = self._snapshot_sender.pending
        out["inbox_items"] = len(self._inbox)
        return out

    # ----------------------------------------------------------------- peers

    def set_peer(self, node_id: int, host: str, port: int) -> None:
        """Add a peer or change its address (its outbound connection restarts)."""
        if node_id == self.node_id or node_id < 1:
            raise ValueError(f"invalid peer node id {node_id}")
        self._peers[node_id] = (str(host), int(port))
        self._stop_link(node_id)
        if node_id not in self._blocked:
            self._start_link(node_id)

    def remove_peer(self, node_id: int) -> None:
        """Forget a peer: its connections close and it may no longer connect."""
        self._peers.pop(node_id, None)
        self._disconnect(node_id)

    def block(self, node_id: int) -> None:
        """Cut this node off from ``node_id``: close both connections, refuse new ones."""
        self._blocked.add(node_id)
        self._disconnect(node_id)

    def unblock(self, node_id: int) -> None:
        """Undo :meth:`block`: dial the peer again and accept its connections."""
        self._blocked.discard(node_id)
        if node_id in self._peers and node_id not in self._links:
            self._start_link(node_id)

    def _disconnect(self, node_id: int) -> None:
        self._stop_link(node_id)
        scope = self._inbound.pop(node_id, None)
        if scope is not None:
            scope.cancel()

    def _start_link(self, node_id: int) -> None:
        if self._nursery is None or self._closed:
            return
        link = PeerLink(node_id, self._peers[node_id], self._dialer, self._counters, self._rng)
        scope = trio.CancelScope()
        self._links[node_id] = (link, scope)
        self._nursery.start_soon(self._run_link, link, scope)

    def _stop_link(self, node_id: int) -> None:
        entry = self._links.pop(node_id, None)
        if entry is not None:
            entry[0].close()
            entry[1].cancel()

    @staticmethod
    async def _run_link(link: PeerLink, scope: trio.CancelScope) -> None:
        with scope:
            await link.run()

    def _check_hello(self, hello: Hello) -> str:
        node_id = hello.from_node
        if node_id in self._blocked:
            return f"node {node_id} is blocked by node {self.node_id}"
        if node_id not in self._peers:
            return f"unexpected node id: node {node_id} is not a peer of node {self.node_id}"
        return ""

    # --------------------------------------------------------------- sending

    def _offer(self, link: PeerLink, frame: Frame) -> bool:
        try:
            payloads = self._encode(frame)
        except (OverflowError, TypeError, ValueError) as exc:
            log.error("cannot encode a frame for node %d: %s", link.peer_id, exc)
            payloads = None
        if payloads is None or not link.offer(payloads):
            self._counters.frames_dropped += 1
            return False
        return True

    def _encode(self, frame: Frame) -> list[bytes] | None:
        """The frame's encoding, split into several frames if it is over the size limit."""
        payload = encode_frame(frame)
        if len(payload) <= self.config.max_frame_bytes:
            return [payload]
        if frame.message_count() < 2:
            log.error(
                "dropping a frame for node %d: one message of %d bytes exceeds max_frame_bytes",
                frame.to_node,
                len(payload),
            )
            return None
        left, right = _halves(frame)
        first = self._encode(left)
        second = self._encode(right)
        if first is None or second is None:
            return None
        return first + second

    def _send_with_snapshots(self, link: PeerLink, frame: Frame) -> bool:
        if link.state is LinkState.DOWN or self._nursery is None:
            self._counters.frames_dropped += 1
            return False
        rest = [gm for gm in frame.messages if gm.message.snapshot is None]
        remainder = Frame(
            frame.from_node, frame.to_node, rest, frame.heartbeats, frame.heartbeat_responses
        )
        if not remainder.is_empty() and not self._offer(link, remainder):
            return False
        for gm in frame.messages:
            if gm.message.snapshot is None:
                continue
            if not self._snapshot_sender.submit(
                self._nursery, link.peer_id, link.address, gm.group_id, gm.message
            ):
                log.warning(
                    "snapshot of group %d to node %d failed: %d snapshot sends already pending",
                    gm.group_id,
                    link.peer_id,
                    self.config.max_pending_snapshots,
                )
                self._counters.snapshots_failed += 1
                outcome = SnapshotOutcome(gm.group_id, link.peer_id, SnapshotStatus.FAILURE)
                self._inbox.put_outcome(outcome)
        return True

    # ------------------------------------------------------------- receiving

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        assert self._nursery is not None
        while True:
            await self._connection_slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:
                self._connection_slots.release()
                level = logging.WARNING if exc.errno in _TRANSIENT_ACCEPT_ERRORS else logging.ERROR
                log.log(level, "accepting a connection failed: %s", exc)
                await trio.sleep(0.1)
                continue
            self._nursery.start_soon(self._handle_inbound, stream)

    async def _handle_inbound(self, tcp_stream: trio.SocketStream) -> None:
        cfg = self.config
        remote = _remote_name(tcp_stream)
        stream: trio.abc.Stream = tcp_stream
        hello: Hello | None = None
        receiver = self._snapshot_receiver
        snapshot_slot: list[bool] = []

        def check(hello: Hello) -> str:
            reason = self._check_hello(hello)
            if reason or hello.purpose != ConnectionPurpose.SNAPSHOT:
                return reason
            # Decided before WELCOME, so a busy receiver refuses instead of
            # letting the sender stream a snapshot it will not take.
            if not receiver.reserve():
                return (
                    f"node {self.node_id} is already receiving "
                    f"{cfg.max_snapshot_receives} snapshots"
                )
            snapshot_slot.append(True)
            return ""

        try:
            with trio.fail_after(cfg.handshake_timeout):
                if self._server_tls is not None:
                    stream = await wrap_server(tcp_stream, self._server_tls)
                reader = FrameReader(stream, cfg.max_handshake_bytes, cfg.handshake_timeout)
                hello = await accept_hello(stream, reader, cfg, check)
            reader.max_payload = cfg.max_frame_bytes
            reader.idle_timeout = cfg.idle_timeout
            self._counters.connections_accepted += 1
            conn = Connection(stream, reader, hello.from_node, remote)
            if hello.purpose == ConnectionPurpose.SNAPSHOT:
                await receiver.serve(conn, hello)
            else:
                await self._serve_frames(conn)
        except PeerRefusedError as exc:
            self._counters.handshakes_refused += 1
            log.warning("refused a connection from %s: %s", remote, exc.reason)
        except CONNECTION_ERRORS as exc:
            self._log_inbound_failure(remote, hello, exc)
        finally:
            if snapshot_slot:
                receiver.release()
            await trio.aclose_forcefully(stream)
            self._connection_slots.release()

    def _log_inbound_failure(self, remote: str, hello: Hello | None, exc: BaseException) -> None:
        who = remote if hello is None else f"node {hello.from_node} at {remote}"
        if isinstance(exc, trio.TooSlowError):
            reason = (
                f"no handshake within {self.config.handshake_timeout}s"
                if hello is None
                else f"nothing received for {self.config.idle_timeout}s"
            )
        else:
            reason = describe_error(exc)
        if hello is None or isinstance(exc, ProtocolError | CodecError | trio.TooSlowError):
            self._counters.connections_closed_on_error += 1
            log.warning("closing the connection from %s: %s", who, reason)
        else:
            log.info("the connection from %s ended: %s", who, reason)

    async def _serve_frames(self, conn: Connection) -> None:
        peer = conn.peer_id
        # A newer connection from the same peer replaces the old one (a restart,
        # or a reconnect before this side noticed the old one broke).
        previous = self._inbound.pop(peer, None)
        if previous is not None:
            previous.cancel()
        counters = self._counters
        reader = conn.reader
        inbox = self._inbox
        node_id = self.node_id
        write_timeout = self.config.write_timeout
        with trio.CancelScope() as scope, reader.idle_deadline():
            self._inbound[peer] = scope
            try:
                while True:
                    got = await reader.read()
                    if got is None:
                        log.debug("node %d closed its connection", peer)
                        return
                    kind, payload = got
                    counters.bytes_received += len(payload) + _HEADER_SIZE
                    if kind is Kind.FRAME:
                        frame = decode_frame(payload)
                        if frame.from_node != peer or frame.to_node != node_id:
                            raise ProtocolError(
                                f"frame from node {frame.from_node} to node {frame.to_node} "
                                f"on the connection from node {peer} to node {node_id}"
                            )
                        counters.frames_received += 1
                        await inbox.put_frame(frame)
                    elif kind is Kind.PING:
                        await conn.write(_PONG, write_timeout)
                        counters.bytes_sent += len(_PONG)
                    else:
                        raise ProtocolError(f"unexpected {kind.name} record on a frame connection")
            finally:
                if self._inbound.get(peer) is scope:
                    del self._inbound[peer]

    # ------------------------------------------------------------- lifecycle

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    for listener in self._listeners:
                        nursery.start_soon(self._accept_loop, listener)
                    for node_id in sorted(self._peers):
                        self._start_link(node_id)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self._nursery = None
            for listener in self._listeners:
                await trio.aclose_forcefully(listener)


@asynccontextmanager
async def open_tcp_transport(config: TcpTransportConfig) -> AsyncIterator[TcpTransport]:
    """Listen, dial the peers, and yield the transport; leaving the block closes it all.

    Raises ``OSError`` at once when the listen address cannot be bound. With a
    host that resolves to several addresses, every one is listened on and
    :attr:`TcpTransport.listen_address` reports the first.
    """
    listeners = await trio.open_tcp_listeners(config.listen_port, host=config.listen_host)
    transport = TcpTransport(config, listeners)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport._run)
        try:
            yield transport
        finally:
            await transport.aclose()
