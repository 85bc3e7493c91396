"""TCP transport: frames between nodes, bounded send queues, reconnects, shutdown."""

from __future__ import annotations

import logging
import tracemalloc

import pytest
import trio

from multiraft.frames import Frame, GroupMessage, HeartbeatRecord
from multiraft.raft.types import Message, MessageType
from tests.tcp_support import (
    app_frame,
    cluster,
    quick_config,
    receive_frame,
    transport_logs,
    wait_until,
)
from transport.peer import LinkState
from transport.tcp import open_tcp_transport


async def test_frames_flow_both_ways_in_order_with_every_field_intact() -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        sent = [app_frame(1, 2, group_id=g, index=g, payload=bytes([g]) * g) for g in range(1, 6)]
        for f in sent:
            assert a.send(2, f) is True
        got = [await receive_frame(b) for _ in sent]
        assert got == sent
        reply = Frame(2, 1, [], [], [HeartbeatRecord(4, 2, 1, 3, 0, b"", True)])
        assert b.send(1, reply) is True
        assert await receive_frame(a) == reply
        stats_a, stats_b = a.stats(), b.stats()
        assert stats_a["frames_sent"] == 5
        assert stats_b["frames_received"] == 5
        assert stats_a["frames_received"] == 1
        assert stats_b["frames_sent"] == 1


async def test_one_connection_per_direction_carries_every_group() -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        messages = [
            GroupMessage(g, Message(MessageType.APP_RESP, to=2, from_=1, term=1, index=g))
            for g in range(2000)
        ]
        assert a.send(2, Frame(1, 2, messages)) is True
        got = await receive_frame(b)
        assert [gm.group_id for gm in got.messages] == list(range(2000))
        assert a.stats()["connections_opened"] == 1
        assert b.stats()["connections_accepted"] == 1
        assert b.stats()["inbound_connections"] == 1


async def test_send_to_a_node_that_is_not_a_peer_returns_false() -> None:
    async with cluster(quick_config(1), connect=False) as (a,):
        assert a.send(9, app_frame(1, 9)) is False
        assert a.stats()["frames_dropped"] == 1


async def test_frame_over_the_size_limit_is_split_into_frames_under_it() -> None:
    limit = 64 * 1024
    cfg_a = quick_config(1, max_frame_bytes=limit)
    cfg_b = quick_config(2, max_frame_bytes=limit)
    async with cluster(cfg_a, cfg_b) as (a, b):
        big = [
            GroupMessage(g, app_frame(1, 2, payload=b"p" * 1000).messages[0].message)
            for g in range(300)
        ]
        hbs = [HeartbeatRecord(g, 1, 2, 3, 0) for g in range(50)]
        assert a.send(2, Frame(1, 2, big, hbs)) is True
        received: list[Frame] = []
        while sum(len(f.messages) for f in received) < 300:
            received.append(await receive_frame(b))
        assert len(received) >= 5  # 300 KB of messages over 64 KB frames
        assert [gm.group_id for f in received for gm in f.messages] == list(range(300))
        assert [r.group_id for f in received for r in f.heartbeats] == list(range(50))


async def test_frame_with_one_message_over_the_size_limit_is_dropped() -> None:
    cfg = quick_config(1, max_frame_bytes=4096)
    async with cluster(cfg, quick_config(2)) as (a, _b):
        assert a.send(2, app_frame(1, 2, payload=b"x" * 5000)) is False
        assert a.stats()["frames_dropped"] == 1


async def test_unencodable_frame_is_dropped_without_raising() -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        absurd = Frame(1, 2, [], [HeartbeatRecord(1, 1, 2, 2**64, 0)])
        assert a.send(2, absurd) is False
        assert a.send(2, app_frame(1, 2)) is True
        assert await receive_frame(b) == app_frame(1, 2)


async def test_slow_peer_fills_the_byte_budget_then_send_returns_false() -> None:
    budget = 512 * 1024
    frame = app_frame(1, 2, payload=b"z" * 60_000)
    cfg_a = quick_config(1, send_queue_bytes=budget, idle_timeout=30.0, write_timeout=30.0)
    # Node 2's node never calls receive: after 2 frames its reader stops reading.
    cfg_b = quick_config(2, inbox_frames=2, idle_timeout=30.0)
    async with cluster(cfg_a, cfg_b, quick_config(3)) as (a, _slow, c):
        refused_at = None
        for n in range(2000):
            if not a.send(2, frame):
                refused_at = n
                break
            assert a.stats()["queued_bytes"] <= budget
            await trio.sleep(0)
        assert refused_at is not None, "the budget never filled"
        # From now on the queue stays within the budget however much is offered
        # (12 MB here), and the ready loop is never held up: other peers still get
        # frames at once.
        refused = 0
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(200):
                refused += not a.send(2, frame)
                assert a.stats()["queued_bytes"] <= budget
                await trio.sleep(0)
            grown = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        # Growth is the queue refilling (at most the budget) plus the slow node's
        # own read buffer (it runs in this process too), never the 12 MB offered.
        assert grown < 2 * budget, grown
        assert a.send(3, app_frame(1, 3)) is True
        assert await receive_frame(c) == app_frame(1, 3)
        assert refused > 100
        assert a.stats()["frames_dropped"] == 1 + refused
        assert a.peer_state(2) is LinkState.CONNECTED


async def test_peer_restart_is_rejoined_without_restarting_this_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="multiraft.transport")
    async with cluster(quick_config(1), connect=False) as (a,):
        async with open_tcp_transport(quick_config(2, peers={1: a.listen_address})) as b:
            port = b.listen_port
            a.set_peer(2, "127.0.0.1", port)
            await wait_until(lambda: a.peer_state(2) is LinkState.CONNECTED, 5.0, "connected")
            assert a.send(2, app_frame(1, 2, index=1)) is True
            assert (await receive_frame(b)).messages[0].message.index == 0
        # Node 2 is gone: the link goes down and frames are refused, not queued.
        await wait_until(lambda: a.peer_state(2) is LinkState.DOWN, 5.0, "link down")
        assert a.send(2, app_frame(1, 2, index=2)) is False
        async with open_tcp_transport(
            quick_config(2, listen_port=port, peers={1: a.listen_address})
        ) as b2:
            await wait_until(lambda: a.peer_state(2) is LinkState.CONNECTED, 5.0, "reconnected")
            assert a.send(2, app_frame(1, 2, index=3)) is True
            assert (await receive_frame(b2)).messages[0].message.index == 2
        assert a.stats()["connections_opened"] == 2
    assert any("lost the connection to node 2" in m for m in transport_logs(caplog))
    assert any("connected to node 2" in m for m in transport_logs(caplog, logging.INFO))


async def test_reconnect_attempts_back_off_exponentially() -> None:
    cfg = quick_config(1, reconnect_initial=0.05, reconnect_max=0.4)
    async with cluster(cfg, connect=False) as (a,):
        # A port nothing listens on: bind one, then close it.
        with trio.socket.socket() as s:
            await s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        a.set_peer(2, "127.0.0.1", port)
        await trio.sleep(1.0)
        attempts = a.stats()["dial_failures"]
        # Delays 0.05, 0.1, 0.2, 0.4, 0.4 ... each times [0.5, 1): at least 4 and at
        # most 11 attempts fit in one second (without backoff it would be hundreds).
        assert 4 <= attempts <= 11, attempts
        assert a.peer_state(2) is LinkState.DOWN


async def test_after_aclose_receive_ends_and_send_returns_false() -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        received: list[object] = []

        async def reader() -> None:
            with pytest.raises(trio.EndOfChannel):
                received.append(await a.receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(0.05)
            await a.aclose()
        assert received == []
        assert a.send(2, app_frame(1, 2)) is False
        await a.aclose()  # idempotent
        with pytest.raises(trio.EndOfChannel):
            await a.receive()
        await wait_until(lambda: b.peer_state(1) is LinkState.DOWN, 5.0, "b sees a gone")


async def test_code_after_aclose_inside_the_block_is_not_cancelled() -> None:
    async with open_tcp_transport(quick_config(1)) as a:
        await a.aclose()
        await trio.sleep(0.01)  # would raise Cancelled if aclose cancelled the block
        done = True
    assert done


async def test_cancelling_the_block_stops_every_task() -> None:
    before = trio.lowlevel.current_statistics().tasks_living
    with trio.move_on_after(0.3) as scope:
        async with cluster(quick_config(1), quick_config(2)) as (a, _b):
            a.send(2, app_frame(1, 2))
            assert trio.lowlevel.current_statistics().tasks_living > before
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert trio.lowlevel.current_statistics().tasks_living == before


async def test_changing_a_peers_address_moves_its_connection() -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        cfg = quick_config(2, peers={1: a.listen_address})
        async with open_tcp_transport(cfg) as b_moved:
            a.set_peer(2, "127.0.0.1", b_moved.listen_port)
            await wait_until(lambda: a.peer_state(2) is LinkState.CONNECTED, 5.0, "moved")
            assert a.send(2, app_frame(1, 2)) is True
            assert await receive_frame(b_moved) == app_frame(1, 2)
            assert b.stats()["frames_received"] == 0
            assert a.stats()["connections_opened"] == 2


async def test_removed_peer_is_no_longer_sent_to_nor_accepted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with cluster(quick_config(1), quick_config(2)) as (a, b):
        a.remove_peer(2)
        assert a.peer_state(2) is None
        assert a.send(2, app_frame(1, 2)) is False
        await wait_until(lambda: a.stats()["handshakes_refused"] >= 1, 5.0, "b refused")
        assert b.peer_state(1) is LinkState.DOWN
    assert any(
        "unexpected node id: node 2 is not a peer of node 1" in m for m in transport_logs(caplog)
    )
