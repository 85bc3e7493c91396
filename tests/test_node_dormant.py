"""Quiesced replicas fold their raft member away and wake exactly where they were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from multiraft.raft import StateType
from multiraft.raft.dormant import DormantState
from multiraft.raft.rawnode import RawNode
from multiraft.raft.types import HardState, ProgressState, SoftState
from multiraft.replica import Replica
from node_cluster import Cluster, wait_until
from progress_fields import progress_fields

TICK = 0.1


def _replica(c: Cluster, node: int, group: int) -> Replica:
    r: Replica = c.nodes[node]._table.replicas[group]
    return r


def _all_dormant(c: Cluster, groups: list[int]) -> bool:
    return all(_replica(c, i, g).dormant is not None for i in c.nodes for g in groups)


async def _create_and_fold(c: Cluster, gids: list[int]) -> None:
    """Create the groups (led by nodes in turn) and wait until every replica folded."""
    await c.create_groups(gids, leader=lambda g: g % 3 + 1)
    await c.wait_leaders(gids)
    await c.settle(gids)
    await wait_until(lambda: _all_dormant(c, gids), 2, "every replica dormant")


def _counting(
    reviver: Callable[[Replica, DormantState], RawNode], rebuilt: list[Replica]
) -> Callable[[Replica, DormantState], RawNode]:
    """``reviver``, recording in ``rebuilt`` every replica it rebuilds."""

    def revive(r: Replica, state: DormantState) -> RawNode:
        rebuilt.append(r)
        return reviver(r, state)

    return revive


def _status_fields(status: Any) -> tuple[Any, ...]:
    """Every field of a raft ``Status``, progress field by field."""
    progress = sorted(progress_fields(pid, pr) for pid, pr in status.progress.items())
    return (
        status.id,
        status.hard_state,
        status.soft_state,
        status.applied,
        status.lead_transferee,
        progress,
    )


async def test_quiesced_replicas_fold_and_answer_their_status_without_being_rebuilt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        gids = list(range(6))
        await _create_and_fold(c, gids)
        for g in gids:
            for i in c.ids:
                r = _replica(c, i, g)
                d = r.dormant
                assert d is not None
                leader = g % 3 + 1
                role = StateType.LEADER if i == leader else StateType.FOLLOWER
                assert (d.term, d.commit, d.applied, d.lead, d.state) == (2, 4, 4, leader, role)
                status = c.nodes[i].status(g)
                assert r.dormant is d  # answered from the folded state
                assert (status.id, status.applied, status.lead_transferee) == (i, 4, 0)
                assert status.hard_state == HardState(term=2, vote=leader, commit=4)
                assert status.soft_state == SoftState(lead=leader, raft_state=role)
                if i == leader:
                    assert sorted(
                        (pid, pr.state, pr.match, pr.next, pr.sent_commit)
                        for pid, pr in status.progress.items()
                    ) == [(p, ProgressState.REPLICATE, 4, 5, 0) for p in c.ids]
                else:
                    assert status.progress == {}
                # The rebuilt member reports the very same status.
                assert _status_fields(r.rawnode.status()) == _status_fields(status)
                assert r.dormant is None
        # Still quiesced: the rebuilt members fold again after the next cycle.
        await wait_until(lambda: _all_dormant(c, gids), 2, "every replica dormant again")
        assert all(c.nodes[i].is_quiesced(g) for i in c.ids for g in gids)


async def test_the_dormant_groups_gauge_counts_folds_wakes_and_removals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        assert [c.nodes[i].stats()["dormant_groups"] for i in c.ids] == [0, 0, 0]
        gids = list(range(6))
        await _create_and_fold(c, gids)
        assert [c.nodes[i].stats()["dormant_groups"] for i in c.ids] == [6, 6, 6]
        _replica(c, 2, 4).rawnode  # noqa: B018 (using the member rebuilds it)
        assert [c.nodes[i].stats()["dormant_groups"] for i in c.ids] == [6, 5, 6]
        await wait_until(lambda: _all_dormant(c, gids), 2, "folded again")
        assert [c.nodes[i].stats()["dormant_groups"] for i in c.ids] == [6, 6, 6]
        await c.nodes[3].remove_group(5)
        assert [c.nodes[i].stats()["dormant_groups"] for i in c.ids] == [6, 6, 5]
        assert c.nodes[3].stats()["groups"] == 5


async def test_a_folded_leader_commits_the_next_proposal_at_the_next_index_without_election(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([7], leader=lambda g: 2)
        await c.wait_leaders([7])
        await c.settle([7])
        await wait_until(lambda: _all_dormant(c, [7]), 2, "dormant")
        assert await c.nodes[2].propose(7, b"wake") == (5, b"wake")
        assert [c.nodes[i].status(7).hard_state.term for i in c.ids] == [2, 2, 2]
        assert [c.nodes[i].leader_of(7) for i in c.ids] == [2, 2, 2]
        await c.settle([7])
        assert [c.sms[(7, i)].applied for i in c.ids] == [[(5, b"wake")]] * 3
        await wait_until(lambda: _all_dormant(c, [7]), 2, "dormant again")
        assert await c.nodes[1].propose(7, b"again") == (6, b"again")


async def test_folded_followers_of_a_crashed_leader_node_wake_and_elect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        gids = list(range(9))
        await _create_and_fold(c, gids)
        led_by_1 = [g for g in gids if g % 3 == 0]
        others = [_replica(c, i, g) for i in (2, 3) for g in gids if g % 3 != 0]
        rebuilt: list[Replica] = []
        for r in others:
            assert r.dormant is not None and r.reviver is not None
            r.reviver = _counting(r.reviver, rebuilt)
        c.net.crash(1)
        await c.stop(1)
        del c.nodes[1]

        def new_leaders_agreed() -> bool:
            return all(
                c.nodes[2].leader_of(g) == c.nodes[3].leader_of(g) in (2, 3) for g in led_by_1
            )

        took = await wait_until(new_leaders_agreed, 2 * 10 * TICK, "new leaders")
        assert took <= 2 * 10 * TICK
        # Judging node 1 dead woke only the replicas that followed it: the others
        # were not even rebuilt.
        assert rebuilt == [] and all(r.dormant is not None for r in others)
        for g in led_by_1:
            leader = c.nodes[2].leader_of(g)
            assert leader is not None
            assert c.nodes[leader].status(g).hard_state.term == 3
        # The groups the survivors lead kept their term and leader.
        for g in gids:
            if g % 3 != 0:
                assert c.nodes[2].leader_of(g) == g % 3 + 1
                assert c.nodes[g % 3 + 1].status(g).hard_state.term == 2
        assert await c.nodes[3].propose(led_by_1[0], b"after") == (6, b"after")


async def test_a_replica_folds_into_the_record_it_was_made_with_at_every_fold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await _create_and_fold(c, [4])
        r = _replica(c, 2, 4)
        record = r.dormant
        assert record is not None and record is r._record
        assert (record.term, record.lead, record.commit) == (2, 2, 4)
        assert await c.nodes[2].propose(4, b"wake") == (5, b"wake")
        assert r.dormant is None
        await c.settle([4])
        await wait_until(lambda: _all_dormant(c, [4]), 2, "dormant again")
        assert r.dormant is record and (record.term, record.lead, record.commit) == (2, 2, 5)


async def test_folding_and_rebuilding_keeps_the_election_timeout_generator_where_it_was(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await _create_and_fold(c, [4, 5])
        states = {}
        for i in c.ids:
            for g in (4, 5):
                states[(i, g)] = _replica(c, i, g).rawnode.raft.election_rand_state
        await wait_until(lambda: _all_dormant(c, [4, 5]), 2, "dormant again")
        # A fold keeps a draw count that the rebuild turns back into the state:
        # folding with a seed other than the rebuild's would move it every time.
        for (i, g), state in states.items():
            assert _replica(c, i, g).rawnode.raft.election_rand_state == state
        assert len(set(states.values())) == 6
