"""The outbound side of one peer: a byte-budgeted send queue and the connection that drains it.

Each node dials its own connection to each peer and uses it only to send
frames (the peer answers only keepalives on it). Two nodes therefore hold two
connections between them, one per direction, and never have to agree on which
one to keep when both dial at once.

``offer`` is synchronous and never waits: the ready loop hands over an encoded
frame and learns at once whether it was queued. When nothing is queued or being
written on a plain TCP connection, ``offer`` writes the frame to the socket
itself, without blocking (the bytes the kernel does not take at once are queued
for the writer task): a frame then leaves at once instead of a task step later,
and the writer task, with its timeout scope and socket checkpoints, is woken
only when the socket is full. Frames are refused while the
peer is down (the last dial failed or the connection broke: raft retransmits and
the node reports the groups unreachable) and once the queue holds
``send_queue_bytes`` of frames not yet written, so a slow or silent peer costs
at most that much memory.
"""

from __future__ import annotations

import enum
import logging
import os
import random
from collections import deque
from collections.abc import Awaitable, Callable

import trio

from transport.counters import TransportCounters
from transport.framing import HEADER, Kind, ProtocolError, record
from transport.handshake import (
    CONNECTION_ERRORS,
    Connection,
    Dialer,
    PeerRefusedError,
    describe_error,
)
from transport.tcp_config import PeerAddress
from transport.wire import ConnectionPurpose

__all__ = ["LinkState", "PeerLink"]

log = logging.getLogger("multiraft.transport")

_PING = record(Kind.PING)
#: Frames written in one go are joined up to about this many bytes.
_WRITE_BATCH_BYTES = 256 << 10


class LinkState(enum.Enum):
    """Where a peer's outbound connection stands."""

    #: Not connected yet, first dial under way: frames queue up.
    CONNECTING = "connecting"
    #: Handshake done: frames queue up and are written.
    CONNECTED = "connected"
    #: The last dial failed or the connection broke: frames are refused.
    DOWN = "down"
    #: Closed by the transport (peer removed or blocked, or shutdown).
    CLOSED = "closed"


class PeerLink:
    """Send queue and outbound connection of one peer node."""

    __slots__ = (
        "_counters",
        "_dialer",
        "_direct_fd",
        "_last_error",
        "_queue",
        "_rng",
        "_wakeup",
        "address",
        "budget",
        "peer_id",
        "queued_bytes",
        "state",
    )

    def __init__(
        self,
        peer_id: int,
        address: PeerAddress,
        dialer: Dialer,
        counters: TransportCounters,
        rng: random.Random,
    ) -> None:
        self.peer_id = peer_id
        self.address = address
        self._dialer = dialer
        self._counters = counters
        self._rng = rng
        self.budget = dialer.config.send_queue_bytes
        self._queue: deque[tuple[bytes, bytes]] = deque()
        #: Bytes of frames accepted and not yet written (queued or being written).
        self.queued_bytes = 0
        self.state = LinkState.CONNECTING
        self._wakeup = trio.Event()
        self._last_error = ""
        # The connected socket's descriptor while offer may write to it directly:
        # a plain TCP connection whose writer task waits for work (nothing queued,
        # no write in progress); None otherwise.
        self._direct_fd: int | None = None

    def offer(self, payloads: list[bytes]) -> bool:
        """Queue encoded frames, all or none; False if the peer cannot take them now."""
        if self.state is LinkState.DOWN or self.state is LinkState.CLOSED:
            return False
        size = HEADER.size * len(payloads)
        for payload in payloads:
            size += len(payload)
        if self.queued_bytes + size > self.budget:
            return False
        pack = HEADER.pack
        if self._direct_fd is not None and not self._queue:
            parts: list[bytes] = []
            for payload in payloads:
                parts.append(pack(len(payload), Kind.FRAME))
                parts.append(payload)
            data = b"".join(parts)
            sent = self._write_directly(data)
            counters = self._counters
            if sent == len(data):
                counters.frames_sent += len(payloads)
                counters.bytes_sent += sent
                return True
            # The rest waits for the writer task, in one piece (the frames'
            # boundaries do not matter to the writer).
            rest = data[sent:]
            self._queue.append((b"", rest))
            self.queued_bytes += len(rest)
            counters.frames_sent += len(payloads)
            counters.bytes_sent += sent
            self._wakeup.set()
            return True
        for payload in payloads:
            self._queue.append((pack(len(payload), Kind.FRAME), payload))
        self.queued_bytes += size
        self._wakeup.set()
        return True

    def _write_directly(self, data: bytes) -> int:
        """Write what the socket takes of ``data`` now, without blocking; bytes written."""
        fd = self._direct_fd
        assert fd is not None
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            # A broken connection: the writer task meets the same error on its next
            # write and closes the connection the usual way.
            self._direct_fd = None
            return 0

    def close(self) -> None:
        """Stop accepting frames (the running task is cancelled by its owner)."""
        self._discard()
        self.state = LinkState.CLOSED

    def _discard(self) -> None:
        if self._queue:
            self._counters.frames_discarded += len(self._queue)
            self._queue.clear()
        self.queued_bytes = 0

    def _backoff(self, failures: int) -> float:
        cfg = self._dialer.config
        delay = min(cfg.reconnect_max, cfg.reconnect_initial * (1 << min(failures, 30)))
        return delay * (0.5 + 0.5 * self._rng.random())

    def _note_failure(self, what: str, exc: BaseException) -> None:
        reason = describe_error(exc)
        text = f"{what} node {self.peer_id} at {self.address[0]}:{self.address[1]}: {reason}"
        if isinstance(exc, PeerRefusedError):
            text = (
                f"node {self.peer_id} at {self.address[0]}:{self.address[1]} "
                f"refused the connection: {exc.reason}"
            )
        # A peer that stays down would log every retry; say it once per distinct reason.
        level = logging.WARNING if text != self._last_error else logging.DEBUG
        self._last_error = text
        log.log(level, "%s", text)

    async def run(self) -> None:
        """Keep a connection to the peer open and drain the queue into it, forever."""
        failures = 0
        while True:
            try:
                conn = await self._dialer.connect(
                    self.peer_id, self.address, ConnectionPurpose.FRAMES
                )
            except CONNECTION_ERRORS as exc:
                self._counters.dial_failures += 1
                self._note_failure("cannot connect to", exc)
                self.state = LinkState.DOWN
                self._discard()
                await trio.sleep(self._backoff(failures))
                failures += 1
                continue
            failures = 0
            self._counters.connections_opened += 1
            self.state = LinkState.CONNECTED
            if self._last_error:
                log.info("connected to node %d at %s", self.peer_id, conn.remote)
            self._last_error = ""
            try:
                await self._serve(conn)
            except CONNECTION_ERRORS as exc:
                if isinstance(exc, ProtocolError | trio.TooSlowError):
                    self._counters.connections_closed_on_error += 1
                self._note_failure("lost the connection to", exc)
            finally:
                self.state = LinkState.DOWN
                self._discard()
                await conn.aclose()
            await trio.sleep(self._backoff(0))

    async def _serve(self, conn: Connection) -> None:
        """Write frames and read keepalive answers until either side of that fails."""
        failures: list[BaseException] = []
        async with trio.open_nursery() as nursery:

            async def guarded(half: Callable[[Connection], Awaitable[None]]) -> None:
                try:
                    await half(conn)
                except CONNECTION_ERRORS as exc:
                    failures.append(exc)
                nursery.cancel_scope.cancel()

            nursery.start_soon(guarded, self._read_control)
            nursery.start_soon(guarded, self._write_frames)
        if failures:
            raise failures[0]

    async def _read_control(self, conn: Connection) -> None:
        """Read the peer's keepalive answers; the connection ends when they stop."""
        while True:
            got = await conn.reader.read()
            if got is None:
                raise ProtocolError("peer closed the connection")
            kind, payload = got
            self._counters.bytes_received += len(payload) + HEADER.size
            if kind is not Kind.PONG:
                raise ProtocolError(f"unexpected {kind.name} record from the acceptor")

    async def _write_frames(self, conn: Connection) -> None:
        try:
            await self._drain_queue(conn)
        finally:
            self._direct_fd = None

    async def _drain_queue(self, conn: Connection) -> None:
        cfg = self._dialer.config
        counters = self._counters
        queue = self._queue
        write_timeout = cfg.write_timeout
        direct_fd = conn.socket_fd()
        next_ping = trio.current_time()
        while True:
            if trio.current_time() >= next_ping:
                self._direct_fd = None
                await conn.write(_PING, write_timeout)
                counters.bytes_sent += len(_PING)
                next_ping = trio.current_time() + cfg.keepalive_interval
            if not queue:
                self._wakeup = trio.Event()
                # Idle: offer may write to the socket itself until it queues.
                self._direct_fd = direct_fd
                with trio.move_on_at(next_ping):
                    await self._wakeup.wait()
                self._direct_fd = None
                continue
            parts: list[bytes] = []
            size = 0
            frames = 0
            while queue and size < _WRITE_BATCH_BYTES:
                header, payload = queue.popleft()
                if header:
                    parts.append(header)
                    frames += 1
                parts.append(payload)
                size += len(header) + len(payload)
            if len(parts) == 2 and size >= _WRITE_BATCH_BYTES:
                # One big frame: two writes instead of copying it behind its header.
                await conn.write(parts[0], write_timeout)
                await conn.write(parts[1], write_timeout)
            else:
                await conn.write(b"".join(parts), write_timeout)
            self.queued_bytes -= size
            # The rest of a frame offer began writing was counted there already.
            counters.frames_sent += frames
            counters.bytes_sent += size
