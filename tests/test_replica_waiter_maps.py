"""A replica's waiter maps: one shared read-only empty dict until a request needs its own."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from multiraft.proposals import Waiter
from multiraft.replica import Replica
from node_cluster import Cluster, wait_until


def _replica(c: Cluster, node: int, group: int) -> Replica:
    r: Replica = c.nodes[node]._table.replicas[group]
    return r


async def test_fresh_replicas_share_one_read_only_empty_map_until_a_writer_takes_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([1, 2])
        a, b = _replica(c, 1, 1), _replica(c, 1, 2)
        shared = a.proposal_waiters
        assert shared == {} and shared is a.index_waiters is a.read_waiters
        assert b.proposal_waiters is shared
        with pytest.raises(TypeError, match="read-only"):
            shared[1] = Waiter()
        with pytest.raises(TypeError, match="read-only"):
            shared.setdefault(1, Waiter())
        with pytest.raises(TypeError, match="read-only"):
            shared.update({1: Waiter()})
        assert (shared, shared.pop(1, None)) == ({}, None)
        own = a.writable_proposal_waiters()
        assert own == {} and own is not shared and a.writable_proposal_waiters() is own
        assert a.writable_index_waiters() is a.index_waiters is not shared
        assert a.writable_read_waiters() is a.read_waiters is not shared
        assert (b.proposal_waiters, b.index_waiters, b.read_waiters) == (shared, shared, shared)
        assert b.proposal_waiters is shared


async def test_a_replica_folding_after_requests_gives_its_maps_back_and_serves_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([5], leader=lambda g: 2)
        await c.wait_leaders([5])
        shared = _replica(c, 3, 5).proposal_waiters
        assert await c.nodes[2].propose(5, b"one") == (5, b"one")
        assert await c.nodes[2].read(5) == 5
        leader = _replica(c, 2, 5)
        assert leader.proposal_waiters is not shared and leader.read_waiters is not shared
        assert leader.index_waiters is not shared
        assert (leader.proposal_waiters, leader.index_waiters, leader.read_waiters) == ({}, {}, {})
        await c.settle([5])
        await wait_until(lambda: leader.dormant is not None, 2, "leader dormant")
        assert leader.proposal_waiters is leader.index_waiters is leader.read_waiters is shared
        assert await c.nodes[2].propose(5, b"two") == (6, b"two")
        assert await c.nodes[1].propose(5, b"three") == (7, b"three")
        assert [c.sms[(5, i)].applied for i in c.ids] == [
            [(5, b"one"), (6, b"two"), (7, b"three")]
        ] * 3


async def test_failing_a_replica_leaves_it_the_shared_empty_maps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([4])
        r = _replica(c, 1, 4)
        shared = _replica(c, 2, 4).proposal_waiters
        waiter = Waiter()
        r.writable_proposal_waiters()[9] = waiter
        r.writable_index_waiters()[3] = 9
        r.fail_all(RuntimeError("stopped"))
        assert r.proposal_waiters is r.index_waiters is r.read_waiters is shared
        assert waiter.done
