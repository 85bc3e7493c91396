"""A member added after the last stored snapshot gets a snapshot taken for it.

The leader's stored snapshot predates the membership change that added the
member, so it does not list the member, who would refuse it; the leader takes
a current one on demand instead (once), and the member restores it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from multiraft import NodeConfig, open_node
from multiraft.raft import ConfChange, ConfChangeType, ConfState
from multiraft.raft.errors import SnapshotTemporarilyUnavailableError
from node_cluster import BlockingStateMachine, Cluster, RecordingStateMachine, wait_until
from storage import MemoryLogEngine
from storage.engine import DurableLogEngine
from transport import MemoryNetwork


async def _compacted_group(c: Cluster) -> tuple[int, list[tuple[int, bytes]]]:
    """Group 1 on nodes 1-3, led by node 1, with a stored snapshot and its log
    compacted up to it. Returns the snapshot's index and node 1's applied commands."""
    await c.create_groups([1], members=[1, 2, 3])
    await c.wait_leaders([1], node_ids=[1, 2, 3])
    for k in range(6):
        await c.nodes[1].propose(1, b"c%d" % k)
    stored = c.engines[1].storage(1)
    snap_index = stored.snapshot().metadata.index
    assert snap_index > 0
    assert stored.first_index() == snap_index + 1
    return snap_index, list(c.sms[(1, 1)].applied)


async def test_voter_added_after_the_last_snapshot_gets_one_taken_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(4, snapshot_entries=5, snapshot_keep_entries=0) as c:
        snap_index, applied = await _compacted_group(c)
        cs = await c.nodes[1].change_membership(1, ConfChange(ConfChangeType.ADD_NODE, 4))
        assert cs == ConfState(voters=(1, 2, 3, 4))
        added_at = c.nodes[1].applied_index(1)
        assert added_at > snap_index
        sm4 = c.sms[(1, 4)] = RecordingStateMachine()
        await c.nodes[4].create_group(1, [], state_machine=sm4, join=True)
        await wait_until(lambda: c.nodes[4].applied_index(1) == added_at, 5, "node 4 restores")
        leader = c.nodes[1].stats()
        assert (leader["snapshots_on_demand"], leader["snapshots_sent"]) == (1, 1)
        assert c.nodes[4].stats()["snapshots_restored"] == 1
        received = c.engines[4].storage(1).snapshot().metadata
        assert (received.index, received.conf_state) == (added_at, cs)
        # The leader stored the snapshot it took: the next member needs no new one.
        assert c.engines[1].storage(1).snapshot().metadata.index == added_at
        assert sm4.applied == applied
        assert c.nodes[4].status(1).progress == {}
        await c.nodes[1].propose(1, b"after")
        await wait_until(lambda: sm4.applied == [*applied, (added_at + 1, b"after")], 5)
        assert c.nodes[1].status(1).progress[4].match == added_at + 1


async def test_learner_added_after_the_last_snapshot_catches_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(4, snapshot_entries=5, snapshot_keep_entries=0) as c:
        snap_index, applied = await _compacted_group(c)
        change = ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4)
        cs = await c.nodes[1].change_membership(1, change)
        assert cs == ConfState(voters=(1, 2, 3), learners=(4,))
        added_at = c.nodes[1].applied_index(1)
        sm4 = c.sms[(1, 4)] = RecordingStateMachine()
        await c.nodes[4].create_group(1, [], state_machine=sm4, join=True)
        await wait_until(lambda: c.nodes[4].applied_index(1) == added_at, 5, "node 4 restores")
        assert c.nodes[1].stats()["snapshots_sent"] == 1
        assert c.engines[4].storage(1).snapshot().metadata.conf_state == cs
        assert sm4.applied == applied
        assert snap_index < added_at


async def test_blocking_state_machine_is_snapshotted_in_a_worker_thread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Worker threads let the mock clock run ahead: no quorum checks, long elections,
    # and proposal deadlines far beyond any jump while a thread applies.
    async with Cluster(
        4,
        snapshot_entries=5,
        snapshot_keep_entries=0,
        check_quorum=False,
        election_ticks=1000,
        proposal_timeout=10_000.0,
    ) as c:
        for i in (1, 2, 3):
            sm = c.sms[(1, i)] = BlockingStateMachine()
            sm.release.set()
            await c.nodes[i].create_group(1, [1, 2, 3], state_machine=sm, campaign=i == 1)
        await c.wait_leaders([1], node_ids=[1, 2, 3])
        for k in range(6):
            await c.nodes[1].propose(1, b"c%d" % k)
        snap_index = c.engines[1].storage(1).snapshot().metadata.index
        await c.nodes[1].change_membership(1, ConfChange(ConfChangeType.ADD_NODE, 4))
        # The membership is applied on the event loop, the commands in a thread.
        added_at = c.nodes[1].status(1).hard_state.commit
        # Virtual time runs ahead while threads apply: wait on the outcome, not the clock.
        await wait_until(lambda: c.nodes[1].applied_index(1) == added_at, 10_000, "applied")
        assert snap_index < added_at
        sm4 = c.sms[(1, 4)] = BlockingStateMachine()
        sm4.release.set()
        await c.nodes[4].create_group(1, [], state_machine=sm4, join=True)
        await wait_until(lambda: c.nodes[4].applied_index(1) == added_at, 10_000, "node 4 restores")
        assert c.nodes[1].stats()["snapshots_on_demand"] == 1
        assert c.engines[1].storage(1).snapshot().metadata.index == added_at
        assert sm4.applied == c.sms[(1, 1)].applied


async def test_durable_leader_stores_the_snapshot_it_took_and_recovers_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    net = MemoryNetwork()
    engine2 = MemoryLogEngine()

    def config(i: int) -> NodeConfig:
        return NodeConfig(i, write_in_thread=False, snapshot_entries=5, snapshot_keep_entries=0)

    async with (
        open_node(config(1), transport=net.transport(1), data_dir=tmp_path) as n1,
        open_node(config(2), transport=net.transport(2), log_engine=engine2) as n2,
    ):
        await n1.create_group(1, [1], state_machine=RecordingStateMachine(), campaign=True)
        for k in range(6):
            await n1.propose(1, b"c%d" % k)
        cs = await n1.change_membership(1, ConfChange(ConfChangeType.ADD_LEARNER_NODE, 2))
        added_at = n1.applied_index(1)
        sm2 = RecordingStateMachine()
        await n2.create_group(1, [], state_machine=sm2, join=True)
        await wait_until(lambda: n2.applied_index(1) == added_at, 5, "node 2 restores")
        assert n1.stats()["snapshots_on_demand"] == 1
        assert [c for _, c in sm2.applied] == [b"c%d" % k for k in range(6)]
    engine = DurableLogEngine.open(str(tmp_path))
    try:
        meta = engine.storage(1).snapshot().metadata
        assert (meta.index, meta.conf_state) == (added_at, cs)
    finally:
        engine.close()


async def test_after_a_restart_the_membership_index_is_rebuilt_from_the_log(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(4, snapshot_entries=5, snapshot_keep_entries=0) as c:
        snap_index, applied = await _compacted_group(c)
        change = ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4)
        cs = await c.nodes[1].change_membership(1, change)
        added_at = c.nodes[1].applied_index(1)
        await wait_until(lambda: all(c.nodes[i].applied_index(1) == added_at for i in (2, 3)), 5)
        # Every member restarts: each rebuilds the membership, and the index it is
        # as of, from its snapshot and the change re-applied from its log.
        for i in (1, 2, 3):
            await c.stop(i)
        for i in (1, 2, 3):
            node = await c.start(i)
            sm = c.sms[(1, i)] = RecordingStateMachine()
            await node.create_group(1, [1, 2, 3], state_machine=sm, campaign=i == 1)
        replicas = [c.nodes[i]._table.replicas[1] for i in (1, 2, 3)]
        # Node 1 campaigns at once: its new term's empty entry may be applied too.
        await wait_until(lambda: all(r.applied >= added_at for r in replicas), 5, "re-applied")
        assert [(r.conf_state, r.conf_index) for r in replicas] == [(cs, added_at)] * 3
        await c.wait_leaders([1], node_ids=[1, 2, 3])
        leader = c.nodes[1].leader_of(1)
        assert leader is not None
        sm4 = c.sms[(1, 4)] = RecordingStateMachine()
        await c.nodes[4].create_group(1, [], state_machine=sm4, join=True)
        commit = c.nodes[leader].status(1).hard_state.commit
        await wait_until(lambda: c.nodes[4].applied_index(1) == commit, 5, "node 4 restores")
        assert c.nodes[leader].stats()["snapshots_on_demand"] == 1
        assert c.engines[4].storage(1).snapshot().metadata.conf_state == cs
        assert sm4.applied == applied
        assert snap_index < added_at


async def test_source_reuses_a_snapshot_taken_but_not_yet_written_and_waits_for_the_apply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(4, snapshot_entries=5, snapshot_keep_entries=0) as c:
        await _compacted_group(c)
        await c.nodes[1].change_membership(1, ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4))
        table = c.nodes[1]._table
        source = table.snapshot_sends.source
        assert source is not None
        r = table.replicas[1]
        stored = c.engines[1].storage(1).snapshot()
        assert stored.metadata.index < r.conf_index == r.applied
        # Taken at once from the idle state machine, queued for the next write...
        taken = source.current(1, stored)
        assert (taken.metadata.index, taken.metadata.conf_state) == (r.applied, r.conf_state)
        assert r.pending_write is not None and r.pending_write.created_snapshot is taken
        # ...and handed out again until then, not taken twice.
        assert source.current(1, stored) is taken
        assert c.nodes[1].stats()["snapshots_on_demand"] == 1
        # A state machine behind the membership (mid-batch, or re-applying after a
        # restart) cannot give one: raft is told to ask again later.
        r.pending_write = None
        r.conf_index = r.applied + 1
        with pytest.raises(SnapshotTemporarilyUnavailableError, match="predates"):
            source.current(1, stored)
        assert source.current(99, stored) is stored
        r.conf_index = r.applied
