"""Requests and replies between processes: length-prefixed packed messages over TCP.

Each record is a 4-byte big-endian length, a 4-byte request id, and one
message packed by :mod:`examples.rangekv.wire`. A connection carries many
requests at once; the server answers each as soon as it is done (possibly out
of order) under the request's id. A record that does not decode closes the
connection; the server keeps serving others.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import trio

from examples.rangekv.client import LinkError
from examples.rangekv.protocol import Unavailable
from examples.rangekv.wire import CodecError, pack, unpack

__all__ = ["DialingLink", "RpcClient", "RpcLink", "open_rpc_client", "serve_rpc"]

_log = logging.getLogger("examples.rangekv.rpc")

_HEADER = struct.Struct(">II")
#: Largest record either side accepts (a dump of a big node fits).
MAX_RECORD = 256 << 20
#: Requests one connection may have in progress on the server.
_MAX_IN_FLIGHT = 4096

Handler = Callable[[object], Awaitable[object]]


def _record(request_id: int, message: object) -> bytes:
    body = pack(message)
    return _HEADER.pack(len(body), request_id) + body


class _RecordReader:
    """Splits a byte stream into ``(request id, message)`` records."""

    __slots__ = ("_buf", "_stream")

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def next(self) -> tuple[int, object] | None:
        """The next record, or None at a clean end of stream."""
        buf = self._buf
        while True:
            if len(buf) >= _HEADER.size:
                size, request_id = _HEADER.unpack_from(buf)
                if size > MAX_RECORD:
                    raise CodecError(f"record of {size} bytes exceeds {MAX_RECORD}")
                end = _HEADER.size + size
                if len(buf) >= end:
                    body = bytes(buf[_HEADER.size : end])
                    del buf[:end]
                    return request_id, unpack(body)
            data = await self._stream.receive_some(1 << 16)
            if not data:
                if buf:
                    raise CodecError("connection closed inside a record")
                return None
            buf += data


async def serve_rpc(handler: Handler, listeners: Sequence[trio.SocketListener]) -> None:
    """Answer requests on every connection accepted by ``listeners``, forever."""

    async def connection(stream: trio.SocketStream) -> None:
        reader = _RecordReader(stream)
        send_lock = trio.Lock()
        slots = trio.Semaphore(_MAX_IN_FLIGHT)

        async def answer(request_id: int, request: object) -> None:
            try:
                reply = await handler(request)
            except Exception as exc:  # a bug in one request must not end the connection
                _log.exception("request %r failed", request)
                reply = Unavailable(f"internal error: {exc!r}")
            finally:
                slots.release()
            try:
                async with send_lock:
                    await stream.send_all(_record(request_id, reply))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client went away; its other requests find out the same way

        try:
            async with trio.open_nursery() as nursery:
                try:
                    while (record := await reader.next()) is not None:
                        await slots.acquire()
                        nursery.start_soon(answer, *record)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                except CodecError as exc:
                    _log.warning("closing an RPC connection: %s", exc)
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(connection, list(listeners))


class RpcClient:
    """One connection to a node's RPC port; any number of requests in flight."""

    def __init__(self, node_id: int, stream: trio.SocketStream) -> None:
        self.node_id = node_id
        self._stream = stream
        self._send_lock = trio.Lock()
        self._next_id = 0
        self._waiting: dict[int, tuple[trio.Event, list[object]]] = {}
        self._broken: str | None = None
        self._ended = trio.Event()

    @property
    def broken(self) -> bool:
        """Whether the connection is gone (every later call raises :class:`LinkError`)."""
        return self._broken is not None

    async def wait_broken(self) -> None:
        """Return once the connection is gone."""
        await self._ended.wait()

    async def call(self, request: object) -> object:
        """The node's reply to ``request``; :class:`LinkError` if the connection broke."""
        if self._broken is not None:
            raise LinkError(self.node_id, self._broken)
        self._next_id += 1
        request_id = self._next_id
        done = trio.Event()
        slot: list[object] = []
        self._waiting[request_id] = (done, slot)
        try:
            async with self._send_lock:
                await self._stream.send_all(_record(request_id, request))
            await done.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # Part of the request may have gone out: the node may act on it.
            raise LinkError(self.node_id, f"connection lost: {exc}", ambiguous=True) from exc
        finally:
            self._waiting.pop(request_id, None)
        if not slot:
            # Sent, and the connection ended before the answer came.
            raise LinkError(self.node_id, self._broken or "connection lost", ambiguous=True)
        return slot[0]

    async def _read_replies(self) -> None:
        reader = _RecordReader(self._stream)
        try:
            while (record := await reader.next()) is not None:
                waiter = self._waiting.get(record[0])
                if waiter is not None:
                    waiter[1].append(record[1])
                    waiter[0].set()
            self._broken = "the node closed the connection"
        except (trio.BrokenResourceError, trio.ClosedResourceError, CodecError) as exc:
            self._broken = f"connection lost: {exc}"
        finally:
            # Also when the client is closed (this task cancelled): no call may wait
            # for an answer that can no longer arrive.
            if self._broken is None:
                self._broken = "the client was closed"
            for done, _ in self._waiting.values():
                done.set()
            self._ended.set()


@asynccontextmanager
async def open_rpc_client(node_id: int, host: str, port: int) -> AsyncIterator[RpcClient]:
    """Connect to ``node_id``'s RPC port for the duration of the block."""
    stream = await trio.open_tcp_stream(host, port)
    client = RpcClient(node_id, stream)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._read_replies)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


class RpcLink:
    """Reaches hosts in other processes (implements ``HostLink``)."""

    def __init__(self, clients: dict[int, RpcClient]) -> None:
        self.clients = clients

    @property
    def node_ids(self) -> Sequence[int]:
        """The nodes connected."""
        return sorted(self.clients)

    async def call(self, node_id: int, request: object) -> object:
        """``request`` answered by ``node_id``; :class:`LinkError` if unreachable."""
        client = self.clients.get(node_id)
        if client is None:
            raise LinkError(node_id, "not connected")
        return await client.call(request)


class DialingLink:
    """Reaches other processes' hosts by address, connecting on first use (``HostLink``).

    A node's host uses it to read and update the directory through the nodes
    that host it. A broken connection is dialed again on the next call.
    Connections live in ``nursery`` until it ends.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        #: RPC address of each node, by node id.
        self.addresses: dict[int, tuple[str, int]] = {}
        self._nursery = nursery
        self._clients: dict[int, RpcClient] = {}
        self._dialing = trio.Lock()

    @property
    def node_ids(self) -> Sequence[int]:
        """The nodes whose address is known."""
        return sorted(self.addresses)

    async def call(self, node_id: int, request: object) -> object:
        """``request`` answered by ``node_id``; :class:`LinkError` if unreachable."""
        client = await self._connected(node_id)
        return await client.call(request)

    async def _connected(self, node_id: int) -> RpcClient:
        async with self._dialing:
            client = self._clients.get(node_id)
            if client is not None and not client.broken:
                return client
            address = self.addresses.get(node_id)
            if address is None:
                raise LinkError(node_id, "address unknown")
            try:
                dialed: RpcClient = await self._nursery.start(self._hold, node_id, address)
            except OSError as exc:
                raise LinkError(node_id, f"cannot connect: {exc}") from exc
            self._clients[node_id] = dialed
            return dialed

    async def _hold(
        self,
        node_id: int,
        address: tuple[str, int],
        *,
        task_status: trio.TaskStatus[RpcClient] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with open_rpc_client(node_id, *address) as client:
            task_status.started(client)
            await client.wait_broken()
