"""Range KV example RPC: concurrent requests per connection, misbehaving clients, dialing."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

from examples.rangekv.client import LinkError
from examples.rangekv.commands import Value
from examples.rangekv.protocol import GetRequest, StatsReply, StatsRequest, Unavailable
from examples.rangekv.rpc import DialingLink, open_rpc_client, serve_rpc
from examples.rangekv.wire import pack


async def _handler(request: object) -> object:
    if isinstance(request, GetRequest):
        await trio.sleep(0.2 if request.key == b"slow" else 0)  # answered after later ones
        return Value(request.key.upper())
    if isinstance(request, StatsRequest):
        raise RuntimeError("a bug in one request")
    return Unavailable("unexpected")


async def _serve(nursery: trio.Nursery) -> int:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    nursery.start_soon(serve_rpc, _handler, listeners)
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def test_requests_on_one_connection_are_answered_by_id_in_any_order() -> None:
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery)
        async with open_rpc_client(1, "127.0.0.1", port) as client:
            got: dict[bytes, object] = {}

            async def ask(key: bytes) -> None:
                got[key] = await client.call(GetRequest(2, key))

            async with trio.open_nursery() as asks:
                for key in (b"slow", b"a", b"b"):
                    asks.start_soon(ask, key)
            assert got == {b"slow": Value(b"SLOW"), b"a": Value(b"A"), b"b": Value(b"B")}
            reply = await client.call(StatsRequest())
            assert reply == Unavailable("internal error: RuntimeError('a bug in one request')")
            assert not isinstance(reply, StatsReply)
        nursery.cancel_scope.cancel()


async def test_a_reset_or_garbage_from_one_client_leaves_the_server_serving_others() -> None:
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery)
        # A client that sends a request and resets the connection before the answer.
        rude = trio.socket.socket()
        await rude.connect(("127.0.0.1", port))
        body = pack(GetRequest(2, b"slow"))
        await rude.send(struct.pack(">II", len(body), 1) + body)
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.close()
        # A client that sends bytes that are no message.
        garbage = await trio.open_tcp_stream("127.0.0.1", port)
        await garbage.send_all(struct.pack(">II", 3, 1) + b"\xff\xff\xff")
        assert await garbage.receive_some(10) == b""  # closed by the server
        await garbage.aclose()
        await trio.sleep(0.3)  # the rude client's answer is ready, and has nowhere to go
        async with open_rpc_client(1, "127.0.0.1", port) as client:
            assert await client.call(GetRequest(2, b"x")) == Value(b"X")
        nursery.cancel_scope.cancel()


async def test_a_dialing_link_connects_on_first_use_and_again_after_the_connection_broke() -> None:
    async with trio.open_nursery() as nursery:
        link = DialingLink(nursery)
        with pytest.raises(LinkError, match="node 7: address unknown"):
            await link.call(7, GetRequest(2, b"a"))
        servers: list[trio.CancelScope] = []

        async def serve(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                servers.append(scope)
                async with trio.open_nursery() as inner:
                    task_status.started(await _serve(inner))

        port = await nursery.start(serve)
        link.addresses[7] = ("127.0.0.1", port)
        assert link.node_ids == [7]
        assert await link.call(7, GetRequest(2, b"a")) == Value(b"A")
        first = link._clients[7]
        assert await link.call(7, GetRequest(2, b"b")) == Value(b"B")
        assert link._clients[7] is first  # one connection, reused
        servers[0].cancel()  # the server goes away: listener and connection closed
        await first.wait_broken()
        assert first.broken
        with pytest.raises(LinkError, match="node 7: cannot connect"):
            await link.call(7, GetRequest(2, b"c"))
        port = await nursery.start(serve)
        link.addresses[7] = ("127.0.0.1", port)
        assert await link.call(7, GetRequest(2, b"d")) == Value(b"D")
        assert link._clients[7] is not first
        nursery.cancel_scope.cancel()
