"""Coalesced heartbeats, quiescence, waking, and failover of quiesced groups."""

from __future__ import annotations

import pytest
import trio

from multiraft.raft import ConfChange, ConfChangeType, ConfState, StateType
from node_cluster import Cluster, wait_until

TICK = 0.1


async def ticks(n: int) -> None:
    await trio.sleep(n * TICK)


@pytest.mark.parametrize("groups", [1, 100, 2000])
async def test_heartbeat_frames_per_tick_per_peer_are_one_whatever_the_group_count(
    autojump_clock: trio.testing.MockClock, groups: int
) -> None:
    async with Cluster(3, quiesce=False) as c:
        gids = list(range(groups))
        await c.create_groups(gids, leader=lambda g: 1)
        await c.wait_leaders(gids, timeout=10)
        await ticks(3)
        net = c.net
        before = {(s, d): net.frames_sent(s, d) for s in c.ids for d in c.ids if s != d}
        records = {(s, d): net.heartbeat_records_sent(s, d) for s, d in before}
        msgs = {(s, d): net.messages_sent(s, d) for s, d in before}
        stats1 = c.nodes[1].stats()
        n = 10
        await ticks(n)
        for s, d in before:
            assert net.frames_sent(s, d) - before[(s, d)] == n, (s, d)
        # Node 1 leads every group: one heartbeat record per group and tick to each
        # follower, one response record back, and no other message.
        for d in (2, 3):
            assert net.heartbeat_records_sent(1, d) - records[(1, d)] == n * groups
            assert net.heartbeat_records_sent(d, 1) - records[(d, 1)] == n * groups
            assert net.messages_sent(1, d) - msgs[(1, d)] == n * groups
        assert net.messages_sent(2, 3) == msgs[(2, 3)]
        stats2 = c.nodes[1].stats()
        assert stats2["heartbeats_coalesced"] - stats1["heartbeats_coalesced"] == 2 * n * groups
        assert stats2["heartbeat_frames_sent"] - stats1["heartbeat_frames_sent"] == 2 * n
        assert stats2["groups_ticked"] - stats1["groups_ticked"] == n * groups
        assert stats2["quiesced_groups"] == 0


async def test_settled_groups_are_not_ticked_and_peers_exchange_only_empty_frames(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        gids = list(range(50))
        await c.create_groups(gids, leader=lambda g: g % 3 + 1)
        await c.wait_leaders(gids)
        await c.settle(gids)
        await ticks(2)
        net = c.net
        links = [(s, d) for s in c.ids for d in c.ids if s != d]
        frames = {link: net.frames_sent(*link) for link in links}
        msgs = {link: net.messages_sent(*link) for link in links}
        before = {i: c.nodes[i].stats() for i in c.ids}
        await ticks(20)
        for link in links:
            assert net.frames_sent(*link) - frames[link] == 20
            assert net.messages_sent(*link) == msgs[link]
        for i in c.ids:
            after = c.nodes[i].stats()
            assert after["groups_ticked"] == before[i]["groups_ticked"]
            assert after["ticks"] - before[i]["ticks"] == 20
            assert after["quiesced_groups"] == 50
            assert after["ready_cycles"] == before[i]["ready_cycles"]
            assert after["storage_syncs"] == before[i]["storage_syncs"]


async def test_proposal_wakes_a_quiesced_group_without_an_election(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([7], leader=lambda g: 2)
        await c.wait_leaders([7])
        await c.settle([7])
        term = c.nodes[2].status(7).hard_state.term
        # Proposed on a follower: the forwarded proposal wakes the leader too.
        assert await c.nodes[3].propose(7, b"wake") == (5, b"wake")
        for i in c.ids:
            assert c.nodes[i].status(7).hard_state.term == term
            assert c.nodes[i].leader_of(7) == 2
        await c.settle([7])
        assert [c.sms[(7, i)].applied for i in c.ids] == [[(5, b"wake")]] * 3


async def test_quiesced_groups_of_a_crashed_leader_node_elect_within_two_election_timeouts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        gids = list(range(60))
        await c.create_groups(gids, leader=lambda g: g % 3 + 1)
        await c.wait_leaders(gids)
        await c.settle(gids)
        led_by_1 = [g for g in gids if g % 3 == 0]
        c.net.crash(1)
        await c.stop(1)
        crashed_at = trio.current_time()

        def new_leaders_agreed() -> bool:
            return all(
                c.nodes[2].leader_of(g) == c.nodes[3].leader_of(g) in (2, 3) for g in led_by_1
            )

        took = await wait_until(new_leaders_agreed, 2 * 10 * TICK, "new leaders")
        assert took <= 2 * 10 * TICK
        assert trio.current_time() - crashed_at <= 2 * 10 * TICK
        for g in led_by_1:
            leader = c.nodes[2].leader_of(g)
            assert leader in (2, 3)
            assert c.nodes[leader].status(g).soft_state.raft_state == StateType.LEADER
        # Groups led by the survivors kept their leaders.
        for g in gids:
            if g % 3 != 0:
                assert c.nodes[2].leader_of(g) == g % 3 + 1
        assert await c.nodes[3].propose(led_by_1[0], b"after") == (6, b"after")


async def test_dead_peer_keeps_only_its_own_groups_awake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(4) as c:
        await c.create_groups([1], members=[1, 2, 3])
        await c.create_groups([2], members=[1, 2, 4])
        await c.wait_leaders([1], node_ids=[1, 2, 3])
        await c.wait_leaders([2], node_ids=[1, 2, 4])
        c.net.crash(4)
        await c.stop(4)
        await ticks(12)
        assert c.nodes[1].stats()["dead_peers"] == 1
        await c.nodes[1].propose(1, b"a")
        await c.nodes[1].propose(2, b"b")
        await ticks(10)
        assert c.nodes[1].is_quiesced(1)
        assert not c.nodes[1].is_quiesced(2)
        assert c.nodes[1].leader_of(2) == 1


async def test_quiesce_heartbeat_with_a_stale_term_keeps_the_follower_awake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from multiraft.frames import Frame, HeartbeatRecord

    async with Cluster(3) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        await c.settle([1])
        status = c.nodes[2].status(1)
        term, commit = status.hard_state.term, status.hard_state.commit
        await c.nodes[1].propose(1, b"x")  # wakes the group everywhere
        node2 = c.nodes[2]
        assert not node2.is_quiesced(1)
        # A forged quiesce record from an older term must not put node 2 to sleep.
        node2._inbound.items.append(
            Frame(1, 2, heartbeats=[HeartbeatRecord(1, 1, 2, term - 1, commit, b"", True)])
        )
        node2._signal()
        await trio.sleep(0)
        await wait_until(lambda: not node2._inbound, 1)
        assert not node2.is_quiesced(1)
        assert node2.status(1).hard_state.term == term


async def test_late_answer_leaves_a_quiesced_leader_asleep_but_a_refusal_wakes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from multiraft.frames import Frame, HeartbeatRecord
    from multiraft.heartbeats import QUIESCE_CONTEXT

    async with Cluster(3) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        await c.settle([1])
        node1 = c.nodes[1]
        term = node1.status(1).hard_state.term
        wakeups = node1.stats()["wakeups"]

        async def deliver(rec: HeartbeatRecord) -> None:
            node1._inbound.items.append(Frame(2, 1, heartbeat_responses=[rec]))
            node1._signal()
            await wait_until(lambda: not node1._inbound, 1)

        # An answer to a heartbeat sent before the group quiesced: nothing to do.
        await deliver(HeartbeatRecord(1, 2, 1, term, 0))
        assert node1.is_quiesced(1)
        assert node1.stats()["wakeups"] == wakeups
        # A follower answering the quiesce heartbeat without quiescing: stay awake.
        await deliver(HeartbeatRecord(1, 2, 1, term, 0, QUIESCE_CONTEXT, False))
        assert not node1.is_quiesced(1)
        assert node1.stats()["wakeups"] == wakeups + 1


def test_plain_heartbeats_to_followers_that_get_an_append_are_dropped() -> None:
    from multiraft.raft import Message, MessageType
    from multiraft.ready_cycle import _without_redundant_heartbeats

    hb, app = MessageType.HEARTBEAT, MessageType.APP
    msgs = [
        Message(type=hb, to=2, term=3, commit=5),
        Message(type=hb, to=3, term=3, commit=5),
        Message(type=hb, to=4, term=3, commit=5, context=b"read-ctx-16bytes"),
        Message(type=app, to=2, term=3, index=5, commit=6),
        Message(type=app, to=4, term=3, index=5, commit=6),
    ]
    kept = _without_redundant_heartbeats(msgs)
    # Node 3 gets no append: it keeps its heartbeat; node 4's carries a read context.
    assert kept == [msgs[1], msgs[2], msgs[3], msgs[4]]
    only_heartbeats = msgs[:3]
    assert _without_redundant_heartbeats(only_heartbeats) is only_heartbeats


async def test_a_leader_that_applied_its_own_removal_never_quiesces_so_the_rest_elect_after_it_goes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Found by the simulator (multiraft sim --seed 201 --nodes 5 --groups 10 --steps 10).
    async with Cluster(3) as c:
        await c.create_groups([1], leader=lambda g: 1)
        await c.wait_leaders([1])
        removed = await c.nodes[1].change_membership(1, ConfChange(ConfChangeType.REMOVE_NODE, 1))
        assert removed == ConfState(voters=(2, 3))
        await wait_until(
            lambda: all(c.nodes[i].membership(1) == removed for i in (2, 3)), 2, "applied"
        )
        # The removed node leads on (as in etcd, step_down_on_removal is off), but
        # neither it nor its followers let the group sleep under it.
        await ticks(30)
        assert c.nodes[1].leader_of(1) == 1
        assert [c.nodes[i].is_quiesced(1) for i in (1, 2, 3)] == [False, False, False]
        # Its host collects the replica: the remaining voters elect one of them.
        await c.nodes[1].remove_group(1)
        gone = trio.current_time()
        await wait_until(
            lambda: c.nodes[2].leader_of(1) == c.nodes[3].leader_of(1) in (2, 3),
            3 * 10 * TICK,
            "a successor",
        )
        assert trio.current_time() - gone <= 3 * 10 * TICK
        leader = c.nodes[2].leader_of(1)
        assert leader is not None
        # Bootstrap at 3, the first leader's empty entry 4, the removal 5, the new
        # leader's empty entry 6: the next command lands at 7.
        assert await c.nodes[leader].propose(1, b"after") == (7, b"after")
