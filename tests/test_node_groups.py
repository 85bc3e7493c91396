"""Groups on a node: campaigns, unknown groups, tombstones, snapshots, one write per cycle."""

from __future__ import annotations

import pytest
import trio

from multiraft import GroupRemovedError, NodeConfig, UnknownGroupPolicy
from multiraft.frames import Frame, GroupMessage
from multiraft.raft import Message, MessageType, ProgressState, StateType
from node_cluster import Cluster, RecordingStateMachine, wait_until


async def test_double_campaign_elects_once_in_the_first_term(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        for i in c.ids:
            await c.nodes[i].create_group(1, c.ids, state_machine=RecordingStateMachine())
        await c.nodes[1].campaign(1)
        await c.nodes[1].campaign(1)
        await c.wait_leaders([1])
        assert c.nodes[1].leader_of(1) == 1
        assert c.nodes[1].status(1).hard_state.term == 2
        # On the leader and on a follower of a known leader: no-ops.
        await c.nodes[1].campaign(1)
        await c.nodes[2].campaign(1)
        await trio.sleep(1)
        for i in c.ids:
            assert c.nodes[i].leader_of(1) == 1
            assert c.nodes[i].status(1).hard_state.term == 2


async def test_racing_campaigns_on_every_node_end_with_one_leader_and_no_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        gids = list(range(20))
        for g in gids:
            for i in c.ids:
                await c.nodes[i].create_group(g, c.ids, state_machine=RecordingStateMachine())
        async with trio.open_nursery() as nursery:
            for g in gids:
                for i in c.ids:
                    nursery.start_soon(c.nodes[i].campaign, g)
        await c.wait_leaders(gids, timeout=10)
        for g in gids:
            leader = c.nodes[1].leader_of(g)
            assert leader is not None
            states = [c.nodes[i].status(g).soft_state.raft_state for i in c.ids]
            assert states.count(StateType.LEADER) == 1
            assert await c.nodes[leader].propose(g, b"x") is not None


async def test_campaign_racing_the_groups_own_election_is_a_noop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        for i in c.ids:
            await c.nodes[i].create_group(1, c.ids, state_machine=RecordingStateMachine())
        # Let raft start an election by itself on node 1, then campaign mid-election.
        c.net.isolate(1)
        node = c.nodes[1]
        await wait_until(lambda: node.status(1).soft_state.raft_state == StateType.PRE_CANDIDATE, 5)
        term = node.status(1).hard_state.term
        await node.campaign(1)
        assert node.status(1).soft_state.raft_state == StateType.PRE_CANDIDATE
        assert node.status(1).hard_state.term == term


async def test_buffered_messages_for_an_unknown_group_are_replayed_on_creation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.nodes[1].create_group(
            3, c.ids, state_machine=RecordingStateMachine(), campaign=True
        )
        await trio.sleep(0.05)
        assert c.nodes[2].stats()["unknown_messages_buffered"] == 1  # the pre-vote
        for i in (2, 3):
            await c.nodes[i].create_group(3, c.ids, state_machine=RecordingStateMachine())
        await c.wait_leaders([3])
        assert c.nodes[2].leader_of(3) == 1
        assert c.nodes[2].status(3).hard_state.term == 2
        assert c.nodes[2].stats()["unknown_messages_buffered"] == 0


def _frame_for_groups(src: int, dst: int, gids: range, copies: int = 1) -> Frame:
    return Frame(
        src,
        dst,
        [
            GroupMessage(g, Message(type=MessageType.APP, to=dst, from_=src, term=5))
            for g in gids
            for _ in range(copies)
        ],
    )


async def test_flood_of_unknown_group_ids_keeps_the_buffer_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(2, unknown_group_buffer_groups=100, unknown_group_buffer_messages=2) as c:
        node = c.nodes[2]
        for start in range(0, 10_000, 1000):
            node._inbound.items.append(_frame_for_groups(1, 2, range(start, start + 1000), 3))
        node._signal()
        await wait_until(lambda: not node._inbound, 1)
        stats = node.stats()
        assert stats["unknown_groups_buffered"] == 100
        assert stats["unknown_messages_buffered"] == 200
        assert stats["unknown_group_messages"] == 30_000
        assert stats["unknown_messages_dropped"] == 30_000 - 200
        assert stats["groups"] == 0


async def test_drop_policy_drops_messages_for_unknown_groups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(2, unknown_group_policy=UnknownGroupPolicy.DROP) as c:
        node = c.nodes[2]
        node._inbound.items.append(_frame_for_groups(1, 2, range(50)))
        node._signal()
        await wait_until(lambda: not node._inbound, 1)
        stats = node.stats()
        assert (stats["dropped_messages"], stats["unknown_messages_buffered"]) == (50, 0)
        assert stats["groups"] == 0


async def test_create_policy_hosts_the_group_and_its_flood_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    made: dict[int, RecordingStateMachine] = {}

    def factory(gid: int) -> RecordingStateMachine:
        made[gid] = RecordingStateMachine()
        return made[gid]

    async with Cluster(
        2,
        unknown_group_policy=UnknownGroupPolicy.CREATE,
        state_machine_factory=factory,
        unknown_group_create_limit=10,
    ) as c:
        await c.nodes[1].create_group(
            1, [1, 2], state_machine=RecordingStateMachine(), campaign=True
        )
        await wait_until(lambda: 1 in c.nodes[2].group_ids(), 1, "lazy creation")
        await c.wait_leaders([1])
        assert await c.nodes[1].propose(1, b"split") == (4, b"split")
        await wait_until(lambda: made[1].applied == [(4, b"split")], 2)
        assert c.nodes[2].status(1).hard_state.term == 2
        # Messages from a stranger for new ids: at most 10 empty replicas are created.
        node = c.nodes[2]
        node._inbound.items.append(_frame_for_groups(1, 2, range(100, 1100)))
        node._signal()
        await wait_until(lambda: not node._inbound, 1)
        assert node.stats()["groups"] == 1 + 10
        assert node.stats()["unknown_groups_created"] == 1 + 10


async def test_removed_group_leaves_a_tombstone_that_stale_messages_cannot_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(
        3,
        unknown_group_policy=UnknownGroupPolicy.CREATE,
        state_machine_factory=lambda g: RecordingStateMachine(),
    ) as c:
        await c.create_groups([4])
        await c.wait_leaders([4])
        await c.nodes[3].remove_group(4)
        await c.nodes[1].propose(4, b"still two of three")
        await trio.sleep(2)
        node = c.nodes[3]
        assert node.group_ids() == []
        assert node.stats()["tombstoned_messages"] > 0
        assert node.stats()["unknown_groups_created"] == 0
        with pytest.raises(GroupRemovedError):
            await node.create_group(4, c.ids, state_machine=RecordingStateMachine())


async def test_one_log_write_per_ready_cycle_holds_only_the_groups_with_work(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        gids = list(range(100))
        await c.create_groups(gids)
        await c.wait_leaders(gids)
        await c.settle(gids)
        engine = c.engines[1]
        engine.batches.clear()
        frames_before = c.net.frames_sent(1, 2)
        async with trio.open_nursery() as nursery:
            for g in gids:
                nursery.start_soon(c.nodes[1].propose, g, b"burst")
        # All 100 proposals were appended in one cycle: one batch, one frame to node 2.
        assert sorted(engine.batches[0]) == gids
        assert c.net.frames_sent(1, 2) - frames_before <= 3
        engine.batches.clear()
        await c.settle(gids)
        await c.nodes[1].propose(42, b"one")
        assert engine.batches[0] == [42]
        assert all(b == [42] for b in engine.batches)
        assert c.nodes[1].stats()["storage_syncs"] == engine.syncs


async def test_snapshot_policy_compacts_and_a_lagging_follower_restores_a_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, snapshot_entries=5, snapshot_keep_entries=0) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        c.net.isolate(3)
        for k in range(12):
            await c.nodes[1].propose(1, b"c%d" % k)
        storage = c.engines[1].storage(1)
        # Every 5 entries applied after the initial snapshot (index 3): at 8 and 13.
        assert storage.snapshot().metadata.index == 13
        assert storage.first_index() == 14
        c.net.heal()
        sm3 = c.sms[(1, 3)]
        await wait_until(lambda: c.nodes[3].applied_index(1) == 16, 5, "node 3 catches up")
        assert sm3.restores == 1
        assert sm3.applied == c.sms[(1, 1)].applied
        assert [cmd for _, cmd in sm3.applied] == [b"c%d" % k for k in range(12)]
        progress = c.nodes[1].status(1).progress[3]
        assert progress.state == ProgressState.REPLICATE
        assert c.nodes[1].stats()["snapshots_taken"] >= 2


def test_node_config_rejects_invalid_values_naming_the_field() -> None:
    bad = {
        "tick_interval": 0,
        "election_ticks": 1,
        "heartbeat_ticks": 0,
        "pre_vote": 1,
        "max_inflight_msgs": 0,
        "peer_timeout_ticks": 1,
        "proposal_timeout": float("inf"),
        "snapshot_entries": -1,
        "unknown_group_policy": "drop",
        "unknown_group_buffer_groups": -5,
        "event_buffer": 0,
        "write_in_thread": "yes",
    }
    for field, value in bad.items():
        with pytest.raises(ValueError, match=field):
            NodeConfig(1, **{field: value})
    with pytest.raises(ValueError, match="node_id"):
        NodeConfig(0)
    with pytest.raises(ValueError, match="state_machine_factory"):
        NodeConfig(1, unknown_group_policy=UnknownGroupPolicy.CREATE)
