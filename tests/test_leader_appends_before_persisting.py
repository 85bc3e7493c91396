"""A steady leader's appends leave before its own log write; everything else waits for the write.

The ready cycle sends a leader's append messages first and writes its log in
parallel with the followers (Raft thesis, section 10.2.1). These tests record,
in one sequence, each node's log writes and the frames it hands the transport,
and check the order of the two for the entries of one proposal.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from multiraft.config import NodeConfig
from multiraft.frames import Frame
from multiraft.kv import KVCommand, KVStateMachine
from multiraft.node import Node, open_node
from multiraft.ports import WriteBatch
from multiraft.raft.types import MessageType
from storage.memory_engine import MemoryLogEngine
from transport.memory import MemoryNetwork, MemoryTransport

#: (node, "write", group entry indexes written) or (node, "send", (to, type, first index)).
Event = tuple[int, str, object]


class RecordingEngine(MemoryLogEngine):
    """A memory engine noting which entry indexes each write persists."""

    def __init__(self, node_id: int, events: list[Event]) -> None:
        super().__init__()
        self.node_id = node_id
        self.events = events

    def write(self, batch: WriteBatch) -> None:
        indexes = tuple(e.index for gw in batch.groups for e in gw.entries)
        self.events.append((self.node_id, "write", indexes))
        super().write(batch)


class RecordingTransport:
    """Wraps a memory transport, noting each raft message handed to it."""

    def __init__(self, inner: MemoryTransport, node_id: int, events: list[Event]) -> None:
        self.inner = inner
        self.node_id = node_id
        self.events = events

    def send(self, to_node: int, frame: Frame) -> bool:
        for gm in frame.messages:
            m = gm.message
            first = m.entries[0].index if m.entries else None
            self.events.append((self.node_id, "send", (to_node, m.type, first)))
        return self.inner.send(to_node, frame)

    async def receive(self) -> object:
        return await self.inner.receive()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _position(events: list[Event], wanted: Event) -> int:
    return events.index(wanted)


def _write_of(events: list[Event], node: int, index: int) -> int:
    for i, (n, kind, what) in enumerate(events):
        if n == node and kind == "write" and isinstance(what, tuple) and index in what:
            return i
    raise AssertionError(f"node {node} never wrote entry {index}: {events}")


async def _group_led_by_node_1(stack: AsyncExitStack, events: list[Event]) -> dict[int, Node]:
    """Three recorded nodes hosting group 1, node 1 campaigning for it."""
    net = MemoryNetwork()
    nodes = {}
    for i in (1, 2, 3):
        transport = RecordingTransport(net.transport(i), i, events)
        nodes[i] = await stack.enter_async_context(
            open_node(
                NodeConfig(i, tick_interval=0.01),
                transport=transport,  # type: ignore[arg-type]
                log_engine=RecordingEngine(i, events),
            )
        )
    for node in nodes.values():
        await node.create_group(1, [1, 2, 3], state_machine=KVStateMachine())
    await nodes[1].campaign(1)
    return nodes


async def test_leader_sends_appends_before_its_write_and_followers_ack_after_theirs() -> None:
    events: list[Event] = []
    async with AsyncExitStack() as stack:
        nodes = await _group_led_by_node_1(stack, events)
        # The first proposal of the new term settles the leader (its empty entry committed).
        await nodes[1].propose(1, KVCommand("put", b"a", b"1").to_bytes())
        with trio.fail_after(10):
            while nodes[2].applied_index(1) < nodes[1].applied_index(1):
                await trio.sleep(0.01)
        index = nodes[1].applied_index(1) + 1
        del events[:]
        await nodes[1].propose(1, KVCommand("put", b"b", b"2").to_bytes())
    leader_write = _write_of(events, 1, index)
    for follower in (2, 3):
        append = _position(events, (1, "send", (follower, MessageType.APP, index)))
        assert append < leader_write
        ack = [
            i
            for i, (n, kind, what) in enumerate(events)
            if n == follower and kind == "send" and what == (1, MessageType.APP_RESP, None)
        ]
        assert ack, events
        assert _write_of(events, follower, index) < ack[0]


async def test_a_new_leaders_first_appends_wait_for_its_write() -> None:
    events: list[Event] = []
    async with AsyncExitStack() as stack:
        nodes = await _group_led_by_node_1(stack, events)
        with trio.fail_after(10):
            while nodes[1].leader_of(1) != 1:
                await trio.sleep(0.01)
    # The empty entry a new leader appends rides in the same Ready as its role change.
    first_append = next(
        i
        for i, (n, kind, what) in enumerate(events)
        if n == 1 and kind == "send" and isinstance(what, tuple) and what[1] is MessageType.APP
    )
    (_, _, (_, _, index)) = events[first_append]
    assert isinstance(index, int)
    assert _write_of(events, 1, index) < first_append
