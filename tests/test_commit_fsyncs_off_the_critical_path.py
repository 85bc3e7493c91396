"""The ready cycle keeps ``fdatasync`` off a commit's path where raft allows it.

* A write batch in which no group must sync (only commit indexes moved) goes to
  the engine with ``sync=False``; every batch with entries, a new term or vote,
  a snapshot or a node's own write (membership) goes with ``sync=True``.
* Commands whose entries this node persisted in an earlier cycle are applied,
  and their proposers answered, while the cycle's write is still running;
  entries the cycle itself persists are applied only after it.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from multiraft.config import NodeConfig
from multiraft.kv import KVCommand, KVStateMachine
from multiraft.node import Node, open_node
from multiraft.ports import WriteBatch
from multiraft.raft.types import ConfChange, ConfChangeType
from storage.memory_engine import MemoryLogEngine
from transport.memory import MemoryNetwork

#: One write as the engine saw it: (sync, entry indexes, (term, vote, commit) of each hard state).
Write = tuple[bool, tuple[int, ...], tuple[tuple[int, int, int], ...]]


class WatchedEngine(MemoryLogEngine):
    """A memory engine that records each batch and can hold a write until released.

    ``hold_if(batch)`` picks the write to hold: the engine thread then waits for
    ``release`` (``held`` is set while it waits).
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[Write] = []
        self.batches: list[WriteBatch] = []
        self.hold_if: Callable[[WriteBatch], bool] | None = None
        self.held = threading.Event()
        self.release = threading.Event()

    def write(self, batch: WriteBatch) -> None:
        hold = self.hold_if
        if hold is not None and hold(batch):
            self.hold_if = None
            self.held.set()
            self.release.wait(20)
        self.batches.append(batch)
        self.writes.append(
            (
                batch.sync,
                tuple(e.index for gw in batch.groups for e in gw.entries),
                tuple(
                    (gw.hard_state.term, gw.hard_state.vote, gw.hard_state.commit)
                    for gw in batch.groups
                    if gw.hard_state is not None
                ),
            )
        )
        super().write(batch)


def put(key: bytes, value: bytes) -> bytes:
    return KVCommand("put", key, value).to_bytes()


async def open_nodes(
    stack: AsyncExitStack, members: list[int]
) -> tuple[dict[int, Node], dict[int, WatchedEngine]]:
    """Nodes ``members`` hosting group 1, node 1 its leader with one command applied."""
    net = MemoryNetwork()
    nodes: dict[int, Node] = {}
    engines: dict[int, WatchedEngine] = {}
    for i in members:
        engines[i] = WatchedEngine()
        nodes[i] = await stack.enter_async_context(
            open_node(
                NodeConfig(i, tick_interval=0.01),
                transport=net.transport(i),
                log_engine=engines[i],
            )
        )
    for node in nodes.values():
        await node.create_group(1, members, state_machine=KVStateMachine())
    await nodes[1].campaign(1)
    await nodes[1].propose(1, put(b"a", b"1"))
    with trio.fail_after(10):
        while any(n.applied_index(1) < nodes[1].applied_index(1) for n in nodes.values()):
            await trio.sleep(0.01)
    return nodes, engines


def must_sync(batch: WriteBatch, before: dict[int, tuple[int, int]]) -> bool:
    """Whether ``batch`` holds anything but commit index moves (``before``: term, vote)."""
    need = False
    for gw in batch.groups:
        hs = gw.hard_state
        if not gw.holds_only_hard_state():
            need = True
        if hs is not None:
            if (hs.term, hs.vote) != before.get(gw.group_id, (0, 0)):
                need = True
            before[gw.group_id] = (hs.term, hs.vote)
    return need


async def test_only_batches_of_commit_moves_are_written_without_a_sync() -> None:
    async with AsyncExitStack() as stack:
        nodes, engines = await open_nodes(stack, [1, 2, 3])
        index = nodes[1].applied_index(1) + 1
        marks = {i: len(e.writes) for i, e in engines.items()}
        await nodes[1].propose(1, put(b"b", b"2"))
        with trio.fail_after(10):
            while any(n.applied_index(1) < index for n in nodes.values()):
                await trio.sleep(0.01)
    # Read once the nodes are closed: no write is in flight any more.
    stats = {i: n.stats() for i, n in nodes.items()}
    for i, engine in engines.items():
        # From the election on, a batch skips its sync exactly when it holds only
        # commit moves.
        before: dict[int, tuple[int, int]] = {}
        for k, batch in enumerate(engine.batches):
            assert batch.sync == must_sync(batch, before), (i, k, engine.writes)
        assert (stats[i]["storage_syncs"], stats[i]["storage_unsynced_writes"]) == (
            engine.syncs,
            engine.unsynced_writes,
        )
        # The new entry went with a sync; the commit that followed, without one.
        new = engine.writes[marks[i] :]
        term = new[0][2][0][0] if new[0][2] else engine.writes[-1][2][0][0]
        assert new[0] == (True, (index,), ()), (i, new)
        assert (False, (), ((term, 1, index),)) in new[1:], (i, new)
        assert not any(sync for sync, _, _ in new[1:]), (i, new)


@asynccontextmanager
async def proposal_with_held_write(
    node: Node, engine: WatchedEngine, hold_if: Callable[[WriteBatch], bool]
) -> AsyncIterator[list[object]]:
    """Propose on ``node`` while ``engine`` holds the first write ``hold_if`` picks.

    Yields (once that write is held) the list the proposal's result goes to;
    releases the write on leaving, then waits for the proposal.
    """
    engine.hold_if = hold_if
    answered: list[object] = []

    async def propose() -> None:
        answered.append(await node.propose(1, put(b"b", b"2")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(propose)
        try:
            with trio.fail_after(10):
                while not engine.held.is_set():
                    await trio.sleep(0.005)
            yield answered
        finally:
            engine.release.set()
    assert answered == [None]


async def test_a_command_persisted_earlier_is_applied_before_the_cycle_write_returns() -> None:
    async with AsyncExitStack() as stack:
        nodes, engines = await open_nodes(stack, [1, 2, 3])
        index = nodes[1].applied_index(1) + 1
        leader = engines[1]

        # Hold the leader's write of the cycle that learns the commit of ``index``
        # (its entry was written, with a sync, in the cycle before).
        def learns_commit(b: WriteBatch) -> bool:
            return any(
                gw.hard_state is not None and gw.hard_state.commit >= index for gw in b.groups
            )

        async with proposal_with_held_write(nodes[1], leader, learns_commit) as answered:
            # The write is held, yet the proposer gets its result.
            with trio.fail_after(10):
                while not answered:
                    await trio.sleep(0.005)
            assert not leader.release.is_set()
            assert nodes[1].applied_index(1) == index
            assert nodes[1].stats()["entries_applied_before_write"] >= 1


async def test_entries_persisted_in_the_same_cycle_are_applied_only_after_the_write() -> None:
    async with AsyncExitStack() as stack:
        # A single voter commits its entries in the Ready that persists them.
        nodes, engines = await open_nodes(stack, [1])
        index = nodes[1].applied_index(1) + 1
        engine = engines[1]

        def persists_entry(b: WriteBatch) -> bool:
            return any(e.index == index for gw in b.groups for e in gw.entries)

        async with proposal_with_held_write(nodes[1], engine, persists_entry) as answered:
            await trio.sleep(0.1)
            assert answered == []
            assert nodes[1].applied_index(1) == index - 1
        assert nodes[1].applied_index(1) == index
        assert engine.writes[-1][0] is True


async def test_a_commit_over_a_membership_change_is_written_with_a_sync() -> None:
    async with AsyncExitStack() as stack:
        nodes, engines = await open_nodes(stack, [1, 2, 3])
        index = nodes[1].applied_index(1) + 1
        marks = {i: len(e.writes) for i, e in engines.items()}
        await nodes[1].change_membership(1, ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4))
        with trio.fail_after(10):
            while any(n.applied_index(1) < index for n in nodes.values()):
                await trio.sleep(0.01)
    for i, engine in engines.items():
        new = engine.writes[marks[i] :]
        # The first write whose commit covers the change syncs, though only the
        # commit index moved: a restart must not forget the applied membership.
        first = next(w for w in new if any(c >= index for _, _, c in w[2]))
        assert first[0] is True and first[1] == (), (i, new)
