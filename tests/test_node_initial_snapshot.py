"""New groups start from a snapshot of their whole initial membership.

Each initial member starts with its log compacted at index ``len(peers)``, term
1, under a snapshot listing every initial voter. A replica of an initial member
created empty (``join=True``, or lazily) gets that membership at once, in the
snapshot from the leader, never one member at a time: it can never see itself
as the only voter and elect itself.
"""

from __future__ import annotations

from pathlib import Path

import trio

from multiraft import NodeConfig, UnknownGroupPolicy, open_node
from multiraft.events import LeaderChanged, MembershipChanged
from multiraft.frames import Frame
from multiraft.raft import ConfState, HardState, MessageType, StateType
from node_cluster import Cluster, RecordingStateMachine, wait_until
from storage import MemoryLogEngine
from storage.engine import DurableLogEngine
from transport import MemoryNetwork

INITIAL = ConfState(voters=(1, 2, 3))


def _carries_log(frame: Frame, group: int) -> bool:
    """Whether ``frame`` brings ``group`` entries or a snapshot."""
    return any(
        gm.group_id == group
        and (gm.message.snapshot is not None or bool(gm.message.entries))
        and gm.message.type in (MessageType.APP, MessageType.SNAP)
        for gm in frame.messages
    )


async def _group_with_one_command(c: Cluster) -> None:
    """Group 1 on every node of ``c``, led by node 1, with ``x`` applied everywhere."""
    await c.create_groups([1])
    await c.wait_leaders([1])
    await c.nodes[1].propose(1, b"x")
    await wait_until(lambda: all(c.sms[(1, i)].applied for i in c.ids), 5, "applied")


async def test_new_group_starts_from_its_initial_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await _group_with_one_command(c)
        for i in c.ids:
            stored = c.engines[i].storage(1)
            snap = stored.snapshot()
            assert (snap.metadata.index, snap.metadata.term) == (3, 1)
            assert snap.metadata.conf_state == INITIAL
            assert snap.data == b"[]"  # the state machine's own snapshot, taken at creation
            assert stored.first_index() == 4
            # The first leader's empty entry comes right after it; the command follows.
            assert [(e.index, e.term, e.data[16:]) for e in stored.entries(4, 6)] == [
                (4, 2, b""),
                (5, 2, b"x"),
            ]
            assert c.sms[(1, i)].restores == 0
            assert c.nodes[i].stats()["snapshots_restored"] == 0
        assert c.sms[(1, 2)].applied == [(5, b"x")]


async def test_restarted_member_recovers_the_initial_membership_from_its_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await _group_with_one_command(c)
        await c.stop(3)
        node = await c.start(3)
        sm = RecordingStateMachine()
        await node.create_group(1, [1, 2, 3], state_machine=sm)
        # Restored from the initial snapshot (bytes its own kind produced), then the
        # log after it is applied again.
        await wait_until(lambda: sm.applied == [(5, b"x")], 5, "node 3 re-applies")
        assert sm.restores == 1
        assert c.nodes[3].status(1).hard_state.commit == 5
        assert node._table.replicas[1].conf_state == INITIAL


async def test_empty_replica_of_an_initial_member_gets_the_whole_membership_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One entry per append, as in the simulator run that found the bug: replaying
    # one ADD_NODE entry at a time, node 1 saw the membership {1} after the first.
    async with Cluster(3, max_size_per_msg=1) as c:
        for i in (2, 3):
            sm = c.sms[(1, i)] = RecordingStateMachine()
            await c.nodes[i].create_group(1, [1, 2, 3], state_machine=sm, campaign=i == 2)
        await c.wait_leaders([1], node_ids=[2, 3])
        await c.nodes[2].propose(1, b"a")
        # Node 1 is cut off right after the first frame bringing it any of the log.
        cut = trio.Event()

        def cut_after_first_log_frame(src: int, dst: int, frame: Frame) -> bool:
            if cut.is_set():
                return 1 in (src, dst)
            if dst == 1 and _carries_log(frame, 1):
                cut.set()
            return False

        c.net.set_drop_predicate(cut_after_first_log_frame)
        sm1 = c.sms[(1, 1)] = RecordingStateMachine()
        async with c.nodes[1].events() as events:
            await c.nodes[1].create_group(1, [], state_machine=sm1, join=True)
            await cut.wait()
            # Ten election timeouts alone.
            await trio.sleep(10)
            seen = []
            while (ev := events.get_nowait()) is not None:
                seen.append(ev)
        changes = [ev for ev in seen if isinstance(ev, MembershipChanged)]
        assert changes == [MembershipChanged(1, INITIAL, 3)]
        assert not any(isinstance(ev, LeaderChanged) and ev.leader == 1 for ev in seen)
        st = c.nodes[1].status(1)
        assert st.soft_state.raft_state is not StateType.LEADER
        # What it got was the leader's initial snapshot (nothing before index 4 is
        # in the leader's log), which carries the whole membership.
        assert st.hard_state.commit == 3
        assert c.engines[1].storage(1).snapshot().metadata.index == 3
        assert (sm1.applied, sm1.restores) == ([], 1)
        # Its election attempts (pre-votes) never reached anyone nor raised its term.
        assert st.hard_state.term == c.nodes[2].status(1).hard_state.term
        c.net.set_drop_predicate(None)
        await c.nodes[2].propose(1, b"b")
        await wait_until(lambda: sm1.applied == [(5, b"a"), (6, b"b")], 5, "node 1 follows")


async def test_lazily_created_replica_gets_the_initial_snapshot_from_the_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    created = RecordingStateMachine()

    def factory(group_id: int) -> RecordingStateMachine:
        return created

    def config(i: int) -> NodeConfig:
        return NodeConfig(
            i,
            write_in_thread=False,
            unknown_group_policy=UnknownGroupPolicy.CREATE if i == 3 else UnknownGroupPolicy.BUFFER,
            state_machine_factory=factory if i == 3 else None,
        )

    engines = {i: MemoryLogEngine() for i in (1, 2, 3)}
    async with (
        open_node(config(1), transport=net.transport(1), log_engine=engines[1]) as n1,
        open_node(config(2), transport=net.transport(2), log_engine=engines[2]) as n2,
        open_node(config(3), transport=net.transport(3), log_engine=engines[3]) as n3,
    ):
        await n1.create_group(1, [1, 2, 3], state_machine=RecordingStateMachine(), campaign=True)
        await n2.create_group(1, [1, 2, 3], state_machine=RecordingStateMachine())
        await wait_until(lambda: n3.leader_of(1) == 1 if 1 in n3.group_ids() else False, 5)
        # The leader's log holds nothing before 4: node 3 got the initial snapshot.
        snap = engines[3].storage(1).snapshot()
        assert (snap.metadata.index, snap.metadata.conf_state) == (3, INITIAL)
        assert n3.stats()["unknown_groups_created"] == 1
        assert n3.stats()["snapshots_restored"] == 1
        assert n1.stats()["snapshots_on_demand"] == 0
        await n1.propose(1, b"x")
        await wait_until(lambda: created.applied == [(5, b"x")], 5, "node 3 applies")


async def test_durable_engine_persists_the_initial_snapshot_with_the_first_write(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    net = MemoryNetwork()
    config = NodeConfig(1, write_in_thread=False)
    async with open_node(config, transport=net.transport(1), data_dir=tmp_path) as node:
        sm = RecordingStateMachine()
        await node.create_group(7, [1], state_machine=sm, campaign=True)
        assert await node.propose(7, b"x") == (3, b"x")
    engine = DurableLogEngine.open(str(tmp_path))
    try:
        stored = engine.storage(7)
        snap = stored.snapshot()
        assert (snap.metadata.index, snap.metadata.term, snap.data) == (1, 1, b"[]")
        assert snap.metadata.conf_state == ConfState(voters=(1,))
        assert stored.initial_state() == (HardState(2, 1, 3), ConfState(voters=(1,)))
        assert (stored.first_index(), stored.last_index()) == (2, 3)
    finally:
        engine.close()
    async with open_node(config, transport=net.transport(1), data_dir=tmp_path) as node:
        sm = RecordingStateMachine()
        await node.create_group(7, [1], state_machine=sm, campaign=True)
        assert (sm.restores, sm.applied) == (1, [])
        assert await node.propose(7, b"y") == (5, b"y")
        assert sm.applied == [(3, b"x"), (5, b"y")]
