"""A restarted replica rebuilds its membership by re-applying the log, never twice.

The coordinator does not persist the membership when it applies a change: the
state machine is not durable either, so after a restart raft starts from the
snapshot's membership and re-applies every committed change logged after it, in
order, together with the commands. (A membership persisted as of a later index
would be applied a second time on top of itself: entering a joint configuration
that is already joint is refused, and the group would stop.)
"""

from __future__ import annotations

from typing import Any

import trio

from multiraft import NodeConfig
from multiraft.raft import (
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
)
from node_cluster import Cluster, RecordingStateMachine, wait_until

_JOINT = ConfState(voters=(1, 2), voters_outgoing=(1, 2, 3), learners_next=(3,))
_LEFT = ConfState(voters=(1, 2), learners=(3,))


def _restart_config(c: Cluster, node_id: int, **extra: Any) -> NodeConfig:
    sms = c.sms

    def factory(group_id: int) -> RecordingStateMachine:
        sm = sms[(group_id, node_id)] = RecordingStateMachine()
        return sm

    options = {"write_in_thread": False, "seed": 7, **c.config, **extra}
    return NodeConfig(node_id, state_machine_factory=factory, **options)


async def _enter_joint(c: Cluster) -> None:
    await c.create_groups([1])
    await c.wait_leaders([1])
    assert await c.nodes[1].propose(1, b"before") == (5, b"before")
    demote_3 = ConfChangeV2(
        changes=(ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, 3),),
        transition=ConfChangeTransition.EXPLICIT,
    )
    assert await c.nodes[1].change_membership(1, demote_3) == _JOINT
    await wait_until(lambda: c.nodes[2].membership(1) == _JOINT, 5, "node 2 joint")


async def test_restart_inside_a_joint_config_reapplies_the_log_and_keeps_the_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, snapshot_entries=0) as c:
        await _enter_joint(c)
        await c.stop(2)
        node2 = await c.start(2, _restart_config(c, 2))
        # Raft re-applied bootstrap, the command and the joint change from index 1.
        await wait_until(lambda: node2.applied_index(1) >= 6, 5, "node 2 re-applied")
        assert node2.failure_of(1) is None
        assert node2.membership(1) == _JOINT
        assert c.sms[(1, 2)].applied == [(5, b"before")]
        # The group goes on: leave the joint config, then commit on every replica.
        assert await c.nodes[1].change_membership(1, ConfChangeV2()) == _LEFT
        assert await c.nodes[1].propose(1, b"after") == (8, b"after")
        await wait_until(lambda: node2.applied_index(1) == 8, 5, "node 2 caught up")
        assert node2.membership(1) == _LEFT
        assert c.sms[(1, 2)].applied == [(5, b"before"), (8, b"after")]


async def test_restart_after_a_snapshot_starts_from_its_membership_then_reapplies_later_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A snapshot every 2 applied entries: node 2's latest one predates the
    # joint change (taken at index 5, the command), so the change is re-applied.
    async with Cluster(3, snapshot_entries=2, snapshot_keep_entries=10) as c:
        await _enter_joint(c)
        snap_meta = c.engines[2].storage(1).snapshot().metadata
        assert (snap_meta.index, snap_meta.conf_state) == (5, ConfState(voters=(1, 2, 3)))
        await c.stop(2)
        node2 = await c.start(2, _restart_config(c, 2))
        await wait_until(lambda: node2.applied_index(1) >= 6, 5, "node 2 re-applied")
        assert node2.failure_of(1) is None
        assert node2.membership(1) == _JOINT
        assert c.sms[(1, 2)].applied == [(5, b"before")]
        assert await c.nodes[1].change_membership(1, ConfChangeV2()) == _LEFT
        await wait_until(lambda: node2.membership(1) == _LEFT, 5, "node 2 left joint")
