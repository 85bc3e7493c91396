"""Proposal ids never repeat across a node's runs.

A command's header carries the proposing node's id and a sequence number, and
the node finds the waiter of an applied entry by that number. A restarted node
re-applies (or applies for the first time) entries its earlier runs proposed;
had the numbers restarted at 1, the first of those would answer a new
proposal's waiter with an old command's result: a write acknowledged that was
never committed (simulator seed 2047 of ``--groups 30 --steps 15``).
"""

from __future__ import annotations

import pytest
import trio

from multiraft.config import NodeConfig
from multiraft.node import open_node
from multiraft.proposals import decode_header
from node_cluster import Cluster, RecordingStateMachine, wait_until
from storage.memory_engine import MemoryLogEngine
from transport.memory import MemoryNetwork


class Recording:
    """Answers each command with ``(index, command)`` and keeps what it applied."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, bytes]] = []

    def apply(self, index: int, command: bytes) -> object:
        self.applied.append((index, command))
        return (index, command)

    def snapshot(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        self.applied = []


def _index_of(sm: RecordingStateMachine, command: bytes) -> int:
    """Where ``sm`` applied ``command`` (0: not yet)."""
    return next((i for i, c in sm.applied if c == command), 0)


async def _leader(node: object, group_id: int) -> None:
    with trio.fail_after(10):
        while node.leader_of(group_id) is None:  # type: ignore[attr-defined]
            await trio.sleep(0.01)


async def test_a_restarted_node_answers_its_new_proposal_with_its_own_entry() -> None:
    engine = MemoryLogEngine()
    net = MemoryNetwork()
    async with open_node(NodeConfig(1), transport=net.transport(1), log_engine=engine) as node:
        await node.create_group(1, [1], state_machine=Recording(), campaign=True)
        await _leader(node, 1)
        # Index 1 is the group's initial snapshot, 2 the first leader's empty entry.
        assert await node.propose(1, b"old-1") == (3, b"old-1")
        assert await node.propose(1, b"old-2") == (4, b"old-2")
    # The second run finds the group in the engine and applies its log again.
    net = MemoryNetwork()
    second = Recording()
    async with open_node(NodeConfig(1), transport=net.transport(1), log_engine=engine) as node:
        await node.create_group(1, [1], state_machine=second, campaign=True)
        # Proposed at once: its waiter exists before the old entries are applied.
        result = await node.propose(1, b"new-1")
    # Entries 3 and 4 are the first run's; 5 is the new term's empty entry.
    assert result == (6, b"new-1")
    assert second.applied == [(3, b"old-1"), (4, b"old-2"), (6, b"new-1")]


async def test_an_entry_a_crashed_run_proposed_does_not_answer_the_next_runs_proposal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Node 2 proposes b"old" and crashes before it hears that it committed; its
    # next run proposes b"new" and only then catches up on b"old". Both are its
    # run's first proposal: with ids restarting at 1, applying b"old" answered
    # b"new"'s waiter (a write acknowledged that was never committed).
    async with Cluster(3) as c:
        await c.create_groups([1])
        await c.wait_leaders([1])
        c.net.set_drop_predicate(lambda src, dst, frame: dst == 2)

        async def propose_old() -> None:
            with pytest.raises(Exception, match="closed"):
                await c.nodes[2].propose(1, b"old")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(propose_old)
            leader_sm = c.sms[(1, 1)]
            await wait_until(lambda: _index_of(leader_sm, b"old") > 0, 10, "b'old' applied")
            await c.stop(2)
        c.net.set_drop_predicate(None)
        node2 = await c.start(2)
        sm = RecordingStateMachine()
        await node2.create_group(1, [1, 2, 3], state_machine=sm)
        old = _index_of(leader_sm, b"old")
        index, command = await node2.propose(1, b"new")  # type: ignore[misc]
        assert command == b"new" and index > old
        assert sm.applied[-2:] == [(old, b"old"), (index, b"new")]
        assert leader_sm.applied[-2:] == [(old, b"old"), (index, b"new")]


async def test_proposal_ids_start_at_first_proposal_id() -> None:
    engine = MemoryLogEngine()
    net = MemoryNetwork()
    config = NodeConfig(1, first_proposal_id=7 << 40)
    async with open_node(config, transport=net.transport(1), log_engine=engine) as node:
        await node.create_group(1, [1], state_machine=Recording(), campaign=True)
        await _leader(node, 1)
        await node.propose(1, b"a")
        await node.propose(1, b"b")
    entries = engine.storage(1).entries(3, 5, 1 << 20)
    assert [decode_header(e.data) for e in entries] == [(1, (7 << 40) + 1), (1, (7 << 40) + 2)]


async def test_by_default_each_run_draws_its_own_first_id() -> None:
    engine = MemoryLogEngine()
    seqs = []
    for command in (b"first run", b"second run"):
        net = MemoryNetwork()
        async with open_node(NodeConfig(1), transport=net.transport(1), log_engine=engine) as node:
            await node.create_group(1, [1], state_machine=Recording(), campaign=True)
            await _leader(node, 1)
            index, _ = await node.propose(1, command)  # type: ignore[misc]
            seqs.append(decode_header(engine.storage(1).entries(index, index + 1, 1 << 20)[0].data))
    (node1, first), (node2, second) = seqs
    assert node1 == node2 == 1
    # Random starts below 2**62 (equal with odds of 2**-62).
    assert first != second
    assert first < (1 << 62) + 1 and second < (1 << 62) + 1


@pytest.mark.parametrize("bad", [-1, 1 << 63, 1.5, "7"])
def test_an_invalid_first_proposal_id_is_refused_by_name(bad: object) -> None:
    with pytest.raises(ValueError, match="first_proposal_id"):
        NodeConfig(1, first_proposal_id=bad)  # type: ignore[arg-type]
