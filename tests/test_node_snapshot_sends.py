"""At most one snapshot in flight per group, a node-wide cap, and what frees the slot."""

from __future__ import annotations

import trio

from multiraft.raft import ProgressState
from multiraft.snapshot_sends import SnapshotSends
from node_cluster import Cluster, wait_until

TICK = 0.1
PROBE, REPLICATE = ProgressState.PROBE, ProgressState.REPLICATE


def _progress(c: Cluster, group: int, peer: int) -> tuple[ProgressState, int, int]:
    pr = c.nodes[1].status(group).progress[peer]
    return pr.state, pr.match, pr.pending_snapshot


async def _compact_behind(c: Cluster, groups: list[int], lagging: list[int]) -> int:
    """Elect node 1, cut ``lagging`` off, and commit enough that the leader's log
    no longer holds what they lack. Returns the leader's last index."""
    await c.create_groups(groups)
    await c.wait_leaders(groups)
    for i in lagging:
        c.net.isolate(i)
    for g in groups:
        for k in range(12):
            await c.nodes[1].propose(g, b"c%d" % k)
    last = c.nodes[1].status(groups[0]).hard_state.commit
    for g in groups:
        storage = c.engines[1].storage(g)
        assert storage.first_index() > c.nodes[1].status(g).progress[lagging[0]].match + 1
    return last


def _release(c: Cluster) -> None:
    node = c.nodes[1]
    node._inbound.items.extend(c.transports[1].held)
    c.transports[1].held.clear()
    c.transports[1].hold_outcomes = False
    node._signal()


async def test_second_lagging_follower_gets_no_snapshot_while_one_is_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(5, snapshot_entries=5, snapshot_keep_entries=0) as c:
        last = await _compact_behind(c, [1], [4, 5])
        old_match = {p: _progress(c, 1, p)[1] for p in (4, 5)}
        c.transports[1].hold_outcomes = True
        c.net.heal()
        await wait_until(lambda: c.nodes[1].stats()["snapshots_sent"] == 1, 3, "first snapshot")
        await trio.sleep(5 * TICK)
        states = {p: _progress(c, 1, p) for p in (4, 5)}
        served = next(p for p in (4, 5) if states[p][1] == last)
        waiting = 9 - served
        # The first follower restored the snapshot and caught up; the second stays
        # probing where it was: no snapshot state, nothing pending, no snapshot sent.
        assert states[served] == (REPLICATE, last, 0)
        assert states[waiting] == (PROBE, old_match[waiting], 0)
        stats = c.nodes[1].stats()
        assert stats["snapshots_sent"] == 1
        assert stats["snapshot_sends_in_flight"] == 1
        assert stats["snapshot_sends_refused"] >= 1
        assert c.nodes[waiting].applied_index(1) == old_match[waiting]
        # The transport reports the first snapshot delivered: the slot frees and the
        # second follower gets its snapshot at its next heartbeat response.
        _release(c)
        await wait_until(lambda: _progress(c, 1, waiting) == (REPLICATE, last, 0), 3, "second")
        stats = c.nodes[1].stats()
        assert stats["snapshots_sent"] == 2
        assert c.nodes[waiting].applied_index(1) == last
        assert c.sms[(1, waiting)].applied == c.sms[(1, 1)].applied
        await wait_until(lambda: c.nodes[1].stats()["snapshot_sends_in_flight"] == 0, 3)


async def test_node_wide_cap_holds_another_groups_snapshot_until_a_slot_frees(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(
        3, snapshot_entries=5, snapshot_keep_entries=0, max_concurrent_snapshot_sends=1
    ) as c:
        last = await _compact_behind(c, [1, 2], [3])
        old_match = {g: _progress(c, g, 3)[1] for g in (1, 2)}
        c.transports[1].hold_outcomes = True
        c.net.heal()
        await wait_until(lambda: c.nodes[1].stats()["snapshots_sent"] == 1, 3, "first snapshot")
        await trio.sleep(5 * TICK)
        states = {g: _progress(c, g, 3) for g in (1, 2)}
        served = next(g for g in (1, 2) if states[g][1] == last)
        waiting = 3 - served
        assert states[served] == (REPLICATE, last, 0)
        assert states[waiting] == (PROBE, old_match[waiting], 0)
        assert c.nodes[1].stats()["snapshot_sends_in_flight"] == 1
        _release(c)
        await wait_until(lambda: _progress(c, waiting, 3) == (REPLICATE, last, 0), 3, "second")
        assert c.nodes[1].stats()["snapshots_sent"] == 2
        assert c.nodes[3].applied_index(waiting) == last


async def test_refused_snapshot_send_frees_the_slot_and_the_follower_probes_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, snapshot_entries=5, snapshot_keep_entries=0) as c:
        last = await _compact_behind(c, [1], [3])
        c.transports[1].refuse_snapshots = 1
        c.net.heal()
        await wait_until(lambda: len(c.transports[1].refused) == 1, 3, "refused send")
        await trio.sleep(0)
        stats = c.nodes[1].stats()
        # The refusal was reported: the slot is free and raft went back to probing.
        assert stats["snapshot_sends_in_flight"] == 0
        assert stats["send_failures"] >= 1
        assert _progress(c, 1, 3)[0] is PROBE
        assert _progress(c, 1, 3)[2] == 0
        await wait_until(lambda: _progress(c, 1, 3) == (REPLICATE, last, 0), 3, "retried")
        assert c.nodes[1].stats()["snapshots_sent"] == 2
        assert c.nodes[3].applied_index(1) == last


def test_snapshot_sends_reserve_one_slot_per_group_within_the_node_cap() -> None:
    sends = SnapshotSends(limit=2)
    assert sends.try_reserve(7)
    assert not sends.try_reserve(7)  # the group already has one in flight
    assert sends.try_reserve(8)
    assert not sends.try_reserve(9)  # the node's cap
    assert (len(sends), sends.refused) == (2, 2)
    sends.finished(7)
    assert 7 not in sends
    assert sends.try_reserve(9)
    sends.finished(42)  # unknown: nothing happens
    assert sorted(g for g in (7, 8, 9) if g in sends) == [8, 9]
