"""New groups with equal members and equal small initial state share one initial snapshot."""

from __future__ import annotations

import trio
import trio.testing

from multiraft.group_spec import GroupSpec
from multiraft.raft.types import ConfState, SnapshotMetadata
from node_cluster import Cluster, wait_until


class _FixedStateMachine:
    """A state machine whose snapshot is always ``data``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def apply(self, index: int, command: bytes) -> object:
        return index

    def snapshot(self) -> bytes:
        return self.data

    def restore(self, data: bytes) -> None:
        self.data = data


async def test_equal_small_initial_snapshots_are_one_instance_and_large_ones_are_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        small, large = b"s" * 256, b"L" * 257
        specs = [
            GroupSpec(1, [1, 2, 3], _FixedStateMachine(small)),
            GroupSpec(2, [3, 2, 1], _FixedStateMachine(small)),
            GroupSpec(3, [1, 2, 3], _FixedStateMachine(b"other")),
            GroupSpec(4, [1, 2], _FixedStateMachine(small)),
            GroupSpec(5, [1, 2, 3], _FixedStateMachine(large)),
            GroupSpec(6, [1, 2, 3], _FixedStateMachine(large)),
        ]
        await c.nodes[1].create_groups(specs)
        table = c.nodes[1]._table
        await wait_until(
            lambda: all(table.replicas[g].storage.snapshot().metadata.index for g in range(1, 7)),
            1,
            "initial snapshots stored",
        )
        initial = {g: table.replicas[g].storage.snapshot() for g in range(1, 7)}
        assert initial[1] is initial[2]
        assert initial[3] is not initial[1] and initial[3].data == b"other"
        assert initial[3].metadata is initial[1].metadata
        assert initial[1].metadata == SnapshotMetadata(ConfState(voters=(1, 2, 3)), 3, 1)
        assert initial[4].metadata == SnapshotMetadata(ConfState(voters=(1, 2)), 2, 1)
        assert initial[5] is not initial[6] and initial[5] == initial[6]
        assert initial[5].metadata is initial[1].metadata
