"""Slow state machines run off the loop; leaving open_node stops everything cleanly."""

from __future__ import annotations

import pytest
import trio

from multiraft import NodeClosedError, NodeConfig, open_node
from multiraft.events import GroupCreated, LeaderChanged
from node_cluster import BlockingStateMachine, Cluster, RecordingStateMachine, wait_until
from storage import MemoryLogEngine
from transport import MemoryNetwork


async def test_blocked_state_machine_does_not_stall_other_groups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The mock clock runs ahead whenever every task waits on a thread (the test's
    # own wait for the apply to start, then the blocked apply): no quorum checks
    # and long elections, so no jump costs group 1 its leader before the slow
    # command commits, and a proposal deadline no jump reaches.
    async with Cluster(
        3, quiesce=False, check_quorum=False, election_ticks=1000, proposal_timeout=10_000.0
    ) as c:
        slow = {i: BlockingStateMachine() for i in c.ids}
        for i in c.ids:
            await c.nodes[i].create_group(1, c.ids, state_machine=slow[i], campaign=(i == 1))
        await c.create_groups([2])
        await c.wait_leaders([1, 2])
        result: list[object] = []

        async def propose_slow() -> None:
            result.append(await c.nodes[1].propose(1, b"slow"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(propose_slow)
            await trio.to_thread.run_sync(slow[1].entered.wait, 10)
            ticks_before = c.nodes[1].stats()["ticks"]
            term = c.nodes[2].status(2).hard_state.term
            # Group 2 keeps ticking, heartbeating and committing meanwhile.
            assert await c.nodes[2].propose(2, b"fast") == (5, b"fast")
            await trio.sleep(3)
            assert c.nodes[1].stats()["ticks"] - ticks_before >= 29
            assert c.nodes[2].status(2).hard_state.term == term
            assert all(c.nodes[i].leader_of(2) == 1 for i in c.ids)
            assert result == []
            for sm in slow.values():
                sm.release.set()
        assert result == [(5, b"slow")]
        await wait_until(lambda: all(sm.applied == [(5, b"slow")] for sm in slow.values()), 10_000)


async def test_leaving_open_node_cancels_every_task_and_closes_transport_and_engine(
    autojump_clock: trio.testing.MockClock,
) -> None:
    root = trio.lowlevel.current_root_task()

    def all_tasks() -> set[trio.lowlevel.Task]:
        seen: set[trio.lowlevel.Task] = set()
        stack = [root]
        while stack:
            task = stack.pop()
            seen.add(task)
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return seen

    before = all_tasks()
    net = MemoryNetwork()
    transport = net.transport(1)
    outcome: list[BaseException] = []

    async def propose_forever(node) -> None:  # type: ignore[no-untyped-def]
        try:
            await node.propose(1, b"x")
        except NodeClosedError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as outer:
        async with open_node(NodeConfig(1, proposal_timeout=100.0), transport=transport) as node:
            # Replicas on nodes that never start: no leader, the proposal waits.
            await node.create_group(1, [1, 2, 3], state_machine=RecordingStateMachine())
            outer.start_soon(propose_forever, node)
            await trio.sleep(1)
            assert len(all_tasks()) > len(before) + 1
            engine = node._engine
        assert transport.closed
        assert isinstance(engine, MemoryLogEngine)
        with pytest.raises(RuntimeError, match="closed"):
            engine.storage(1)
    assert len(outcome) == 1
    assert all_tasks() == before
    with pytest.raises(NodeClosedError):
        await node.propose(1, b"late")


async def test_cancelling_the_block_from_outside_stops_the_node(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    transport = net.transport(1)
    with trio.move_on_after(5) as scope:
        async with open_node(NodeConfig(1), transport=transport) as node:
            await node.create_group(9, [1], state_machine=RecordingStateMachine(), campaign=True)
            await wait_until(lambda: node.leader_of(9) == 1, 1)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert transport.closed


async def test_events_report_creation_and_leadership(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    async with open_node(NodeConfig(1), transport=net.transport(1)) as node:
        events = node.events()
        await node.create_group(9, [1], state_machine=RecordingStateMachine(), campaign=True)
        assert await events.__anext__() == GroupCreated(9)
        assert await events.__anext__() == LeaderChanged(9, 1, 2)
    with pytest.raises(StopAsyncIteration):
        await events.__anext__()


async def test_data_dir_uses_the_durable_engine_or_says_it_is_missing(
    autojump_clock: trio.testing.MockClock, tmp_path: object
) -> None:
    try:
        import storage.engine  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="durable log engine"):
            async with open_node(
                NodeConfig(1), transport=MemoryNetwork().transport(1), data_dir=str(tmp_path)
            ):
                pass
        return
    async with open_node(
        NodeConfig(1, write_in_thread=False),
        transport=MemoryNetwork().transport(1),
        data_dir=str(tmp_path),
    ) as node:
        await node.create_group(9, [1], state_machine=RecordingStateMachine(), campaign=True)
        await wait_until(lambda: node.leader_of(9) == 1, 1)
        assert await node.propose(9, b"durable") == (3, b"durable")
