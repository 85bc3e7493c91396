"""A group whose raft rejects an input as impossible is stopped alone; the node carries on."""

from __future__ import annotations

import pytest
import trio

from multiraft import GroupFailedError
from multiraft.events import GroupFailed
from multiraft.frames import Frame, GroupMessage
from multiraft.raft import Entry, Message, MessageType
from node_cluster import Cluster, wait_until

TICK = 0.1


def _group_traffic_from(src: int, group: int, frame: Frame) -> int:
    """Messages and heartbeat records of ``group`` in a frame sent by ``src``."""
    n = sum(1 for gm in frame.messages if gm.group_id == group)
    n += sum(1 for rec in frame.heartbeats if rec.group_id == group)
    n += sum(1 for rec in frame.heartbeat_responses if rec.group_id == group)
    return n if frame.from_node == src else 0


async def test_forged_append_conflicting_with_committed_entries_stops_only_that_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([1, 2])
        await c.wait_leaders([1, 2])
        for k in range(2):
            await c.nodes[1].propose(1, b"c%d" % k)
        node2 = c.nodes[2]
        await wait_until(lambda: node2.status(1).hard_state.commit == 6, 2, "commit on node 2")
        term = node2.status(1).hard_state.term
        assert term == 2
        events = node2.events()
        # Node 1's transport carries an append that matches node 2's log at its
        # commit index but carries an entry for index 3 with another term: it
        # conflicts with an entry node 2 has committed (raft asserts it never can).
        forged = Message(
            type=MessageType.APP,
            to=2,
            from_=1,
            term=term,
            index=6,
            log_term=term,
            entries=(Entry(term + 1, 3, data=b"forged"),),
            commit=6,
        )
        assert c.transports[1].send(2, Frame(1, 2, [GroupMessage(1, forged)]))
        await wait_until(lambda: node2.failure_of(1) is not None, 1, "group 1 stopped")
        sent_by_2: list[int] = []
        c.net.set_drop_predicate(
            lambda s, d, f: sent_by_2.append(_group_traffic_from(2, 1, f)) and False
        )
        reason = node2.failure_of(1)
        assert reason is not None and reason.startswith("AssertionError")
        assert events.get_nowait() == GroupFailed(1, reason)
        stats = node2.stats()
        assert (stats["failed_groups"], stats["groups_failed"], stats["groups"]) == (1, 1, 2)
        with pytest.raises(GroupFailedError) as info:
            await node2.propose(1, b"x")
        assert info.value.group_id == 1
        # The node and its other group carry on; group 1 goes on with nodes 1 and 3.
        assert await node2.propose(2, b"fine") == (5, b"fine")
        assert await c.nodes[1].propose(1, b"after") == (7, b"after")
        await trio.sleep(20 * TICK)
        assert c.nodes[3].applied_index(1) == 7
        # Node 2 no longer acknowledges or answers anything of group 1.
        assert len(sent_by_2) >= 20  # node 2 kept sending frames (group 2, liveness)
        assert sum(sent_by_2) == 0
        assert c.nodes[1].status(1).progress[2].match == 6
        assert node2.status(1).hard_state.commit == 6
        assert c.sms[(1, 2)].applied == [(5, b"c0"), (6, b"c1")]
