"""Tombstones of removed groups outlive a restart on an engine that keeps them."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from multiraft import GroupRemovedError, NodeConfig, UnknownGroupPolicy, open_node
from multiraft.frames import Frame, GroupMessage
from multiraft.ports import LogEngine
from multiraft.raft import Message, MessageType
from node_cluster import RecordingStateMachine, wait_until
from storage import MemoryLogEngine
from transport import MemoryNetwork


def _stale_append(group_id: int) -> Frame:
    return Frame(
        2, 1, [GroupMessage(group_id, Message(type=MessageType.APP, to=1, from_=2, term=9))]
    )


async def _remove_then_restart(
    config: NodeConfig, *, data_dir: Path | None = None, engine: LogEngine | None = None
) -> None:
    net = MemoryNetwork()
    async with open_node(
        config, transport=net.transport(1), data_dir=data_dir, log_engine=engine
    ) as node:
        for g in (1, 2):
            await node.create_group(g, [1], state_machine=RecordingStateMachine(), campaign=True)
        await wait_until(lambda: node.leader_of(1) == node.leader_of(2) == 1, 1)
        assert await node.propose(1, b"doomed") == (3, b"doomed")
        await node.remove_group(1)
    async with open_node(
        config, transport=net.transport(1), data_dir=data_dir, log_engine=engine
    ) as node:
        assert node.stats()["tombstones"] == 1
        # A late message for the removed group, from a peer that did not hear of it.
        assert net.transport(2).send(1, _stale_append(1))
        await wait_until(lambda: node.stats()["tombstoned_messages"] == 1, 1, "dropped")
        stats = node.stats()
        assert (stats["unknown_groups_created"], stats["unknown_messages_buffered"]) == (0, 0)
        assert node.group_ids() == [2]  # recovered by the factory; 1 stays gone
        with pytest.raises(GroupRemovedError):
            await node.create_group(1, [1], state_machine=RecordingStateMachine())
        with pytest.raises(GroupRemovedError):
            await node.propose(1, b"x")
        # Group 2 elected itself again (its new term's empty entry is index 3).
        assert await node.propose(2, b"alive") == (4, b"alive")


def _config() -> NodeConfig:
    # CREATE would host any group a message names, were it not for the tombstone.
    return NodeConfig(
        1,
        write_in_thread=False,
        unknown_group_policy=UnknownGroupPolicy.CREATE,
        state_machine_factory=lambda g: RecordingStateMachine(),
    )


async def test_tombstone_survives_a_restart_on_the_same_data_dir(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    await _remove_then_restart(_config(), data_dir=tmp_path)


async def test_tombstone_survives_a_restart_on_the_same_memory_engine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = MemoryLogEngine()
    await _remove_then_restart(_config(), engine=engine)
    assert engine.removed_groups() == [1]
    assert engine.group_ids() == [2]
