"""Coordinator end to end: many groups on three nodes, proposals, reads, errors."""

from __future__ import annotations

import pytest
import trio

from multiraft import (
    GroupNotFoundError,
    GroupRemovedError,
    NodeConfig,
    NotLeaderError,
    ProposalTimeoutError,
)
from multiraft.events import GroupRemoved, LeaderChanged, MembershipChanged
from multiraft.raft import ConfChange, ConfChangeType
from node_cluster import Cluster, RecordingStateMachine, wait_until

GROUPS = 200


async def test_three_nodes_two_hundred_groups_apply_proposals_from_leaders_and_followers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        gids = list(range(GROUPS))
        await c.create_groups(gids, leader=lambda g: g % 3 + 1)
        await c.wait_leaders(gids, timeout=5)
        assert all(c.nodes[1].leader_of(g) == g % 3 + 1 for g in gids)
        # The designated campaigner won in the first election (term 2) everywhere.
        assert all(c.nodes[g % 3 + 1].status(g).hard_state.term == 2 for g in gids)
        results: dict[tuple[int, int], object] = {}

        async def propose(g: int, i: int) -> None:
            results[(g, i)] = await c.nodes[i].propose(g, b"cmd-%d-%d" % (g, i))

        async with trio.open_nursery() as nursery:
            for g in gids:
                for i in c.ids:
                    nursery.start_soon(propose, g, i)
        for g in gids:
            logs = [c.sms[(g, i)].applied for i in c.ids]
            assert logs[0] == logs[1] == logs[2]
            # Bootstrap takes indexes 1-3, the leader's empty entry 4: commands at 5-7.
            assert sorted(i for i, _ in logs[0]) == [5, 6, 7]
            assert sorted(cmd for _, cmd in logs[0]) == [b"cmd-%d-%d" % (g, i) for i in c.ids]
            for i in c.ids:
                index, cmd = results[(g, i)]  # type: ignore[misc]
                assert cmd == b"cmd-%d-%d" % (g, i)
                assert (index, cmd) in logs[0]
                assert c.nodes[i].applied_index(g) == 7


async def test_read_returns_read_index_after_local_apply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        await c.nodes[1].propose(1, b"a")
        for i in c.ids:
            index = await c.nodes[i].read(1)
            assert index == 5
            assert c.nodes[i].applied_index(1) >= 5
            assert c.sms[(1, i)].applied == [(5, b"a")]


async def test_state_machine_exception_is_raised_by_propose(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        with pytest.raises(ValueError, match="refused at 5"):
            await c.nodes[2].propose(1, b"fail")
        assert await c.nodes[2].propose(1, b"ok") == (6, b"ok")


async def test_propose_errors_for_unknown_removed_and_leaderless_groups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, proposal_timeout=2.0) as c:
        with pytest.raises(GroupNotFoundError):
            await c.nodes[1].propose(9, b"x")
        # Hosted on node 1 only: no quorum, never a leader.
        await c.nodes[1].create_group(5, [1, 2, 3], state_machine=RecordingStateMachine())
        start = trio.current_time()
        with pytest.raises(NotLeaderError) as info:
            await c.nodes[1].propose(5, b"x")
        assert info.value.leader_hint is None
        assert trio.current_time() - start == pytest.approx(2.0)
        with pytest.raises(NotLeaderError):
            await c.nodes[1].read(5)
        async with c.nodes[1].events() as events:
            await c.nodes[1].remove_group(5)
            assert events.get_nowait() == GroupRemoved(5)
        with pytest.raises(GroupRemovedError):
            await c.nodes[1].propose(5, b"x")
        with pytest.raises(GroupRemovedError):
            await c.nodes[1].create_group(5, [1, 2, 3], state_machine=RecordingStateMachine())
        assert 5 not in c.nodes[1].group_ids()


async def test_proposal_times_out_with_leader_hint_when_quorum_is_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, proposal_timeout=1.0) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        c.net.isolate(2)
        c.net.isolate(3)
        with pytest.raises(ProposalTimeoutError) as info:
            await c.nodes[1].propose(1, b"x")
        assert info.value.leader_hint == 1


async def test_membership_change_and_leadership_transfer_publish_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(4) as c:
        await c.create_groups([1], members=[1, 2, 3])
        await c.wait_leaders([1], node_ids=[1, 2, 3])
        sm4 = RecordingStateMachine()
        async with c.nodes[1].events() as events:
            cs = await c.nodes[2].change_membership(1, ConfChange(ConfChangeType.ADD_NODE, 4))
            assert cs.voters == (1, 2, 3, 4)
            await c.nodes[4].create_group(1, [], state_machine=sm4, join=True)
            await c.nodes[1].propose(1, b"after")
            await wait_until(lambda: sm4.applied == [(6, b"after")], 5, "node 4 catches up")
            await c.nodes[3].transfer_leadership(1, 4)
            assert c.nodes[1].leader_of(1) == 4
            seen = []
            while (ev := events.get_nowait()) is not None:
                seen.append(ev)
        assert MembershipChanged(1, cs, 5) in seen
        assert LeaderChanged(1, 4, 3) in seen
        assert c.nodes[4].status(1).hard_state.term == 3


def test_node_config_defaults_follow_the_fixed_api() -> None:
    cfg = NodeConfig(1)
    assert (cfg.tick_interval, cfg.election_ticks, cfg.heartbeat_ticks) == (0.1, 10, 1)
    assert cfg.pre_vote and cfg.check_quorum and cfg.quiesce
    assert cfg.peer_timeout_ticks == cfg.election_ticks
