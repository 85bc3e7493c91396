"""A leader steps acknowledgements while its log write is in flight, and nothing unsafe leaves.

Node 1 leads group 1 with an engine whose next write can be held in its worker
thread. Followers' frames to node 1 can be held back and released at a chosen
moment. The tests pin down two behaviours of
:mod:`multiraft.commits_during_write`: a command node 1 persisted in an earlier
cycle is answered as soon as its acknowledgement arrives, though a later write
is still in flight; and an entry of that unfinished write is applied (and its
proposer answered) only once both followers persisted it, a quorum without the
leader's copy, and announced to nobody (no frame from node 1 carries a commit
index covering it) until the write returns.
"""

from __future__ import annotations

import threading
from contextlib import AsyncExitStack
from typing import Any

import trio

from multiraft.config import NodeConfig
from multiraft.frames import Frame, GroupMessage, HeartbeatRecord
from multiraft.kv import KVCommand, KVStateMachine
from multiraft.node import Node, open_node
from multiraft.ports import WriteBatch
from multiraft.raft.types import Message, MessageType
from storage.memory_engine import MemoryLogEngine
from transport.memory import MemoryNetwork, MemoryTransport


class HeldEngine(MemoryLogEngine):
    """A memory engine noting the entry indexes it persisted; ``hold_next_write``
    makes its next write with entries wait in the worker thread for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.persisted: set[int] = set()
        self._hold = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def hold_next_write(self) -> None:
        self._hold = True

    def write(self, batch: WriteBatch) -> None:
        indexes = [e.index for gw in batch.groups for e in gw.entries]
        if self._hold and indexes:
            self._hold = False
            self.holding.set()
            assert self.release.wait(10), "the test never released the write"
        super().write(batch)
        self.persisted.update(indexes)


class RecordingTransport:
    """Wraps a memory transport: notes the commit index of everything sent while
    ``watching``, and keeps frames to node 1 back while ``holding`` is set."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.watching = False
        self.commits_sent: list[int] = []
        self.holding = False
        self.held: list[Frame] = []

    def send(self, to_node: int, frame: Frame) -> bool:
        if self.watching:
            self.commits_sent.extend(gm.message.commit for gm in frame.messages)
            self.commits_sent.extend(rec.commit for rec in frame.heartbeats)
        if self.holding and to_node == 1:
            self.held.append(frame)
            return True
        return self.inner.send(to_node, frame)

    def let_go(self) -> None:
        self.holding = False
        for frame in self.held:
            self.inner.send(1, frame)
        self.held.clear()

    async def receive(self) -> Any:
        return await self.inner.receive()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _put(key: bytes, value: bytes) -> bytes:
    return KVCommand("put", key, value).to_bytes()


async def _cluster(
    stack: AsyncExitStack,
) -> tuple[dict[int, Node], dict[int, HeldEngine], dict[int, RecordingTransport]]:
    """Group 1 on nodes 1-3, led by node 1, one command applied everywhere."""
    net = MemoryNetwork()
    nodes: dict[int, Node] = {}
    engines: dict[int, HeldEngine] = {}
    transports: dict[int, RecordingTransport] = {}
    for i in (1, 2, 3):
        engines[i] = HeldEngine()
        transports[i] = RecordingTransport(net.transport(i))
        nodes[i] = await stack.enter_async_context(
            open_node(
                # Rare heartbeats: a frame carrying one waits for the write (by design),
                # and the tests want the acknowledgements' frames alone.
                NodeConfig(
                    i, tick_interval=0.01, heartbeat_ticks=100, election_ticks=1000, quiesce=False
                ),
                transport=transports[i],  # type: ignore[arg-type]
                log_engine=engines[i],
            )
        )
    for node in nodes.values():
        await node.create_group(1, [1, 2, 3], state_machine=KVStateMachine())
    await nodes[1].campaign(1)
    await nodes[1].propose(1, _put(b"a", b"1"))
    with trio.fail_after(10):
        while min(nodes[i].applied_index(1) for i in (2, 3)) < nodes[1].applied_index(1):
            await trio.sleep(0.005)
    return nodes, engines, transports


async def _wait_until(predicate: Any) -> None:
    with trio.fail_after(10):
        while not predicate():
            await trio.sleep(0.002)


async def test_an_ack_arriving_during_a_later_write_answers_a_command_persisted_earlier() -> None:
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        nodes, engines, transports = await _cluster(stack)
        leader = nodes[1]
        b_index = leader.applied_index(1) + 1
        results: dict[str, object] = {}

        async def propose(name: str, command: bytes) -> None:
            results[name] = await leader.propose(1, command)

        # B is persisted everywhere, but its acknowledgements are held back.
        for i in (2, 3):
            transports[i].holding = True
        nursery.start_soon(propose, "b", _put(b"b", b"2"))
        await _wait_until(lambda: all(b_index in engines[i].persisted for i in (1, 2, 3)))
        # The leader's next write (C's) now hangs in its worker thread.
        engines[1].hold_next_write()
        nursery.start_soon(propose, "c", _put(b"c", b"3"))
        await trio.to_thread.run_sync(engines[1].holding.wait)
        transports[1].watching = True
        stepped_before = leader.stats()["frames_stepped_during_write"]
        # Node 2's acknowledgements (of B, then of C) reach the leader; node 3's stay
        # held, so C, unpersisted on the leader, is on no durable quorum yet.
        transports[2].let_go()
        await _wait_until(lambda: "b" in results)

        # B was answered (the previous value of "b": none) while C's write still hangs.
        assert results == {"b": None}
        assert not engines[1].release.is_set()
        assert b_index + 1 not in engines[1].persisted
        assert leader.applied_index(1) == b_index
        assert leader.stats()["frames_stepped_during_write"] > stepped_before
        assert all(commit <= b_index for commit in transports[1].commits_sent)
        engines[1].release.set()
        await _wait_until(lambda: "c" in results)
        assert results == {"b": None, "c": None}
        assert leader.applied_index(1) == b_index + 1
        transports[3].let_go()


async def _propose_c_with_its_write_held(
    nursery: trio.Nursery, leader: Node, engine: HeldEngine, transport: RecordingTransport
) -> tuple[int, dict[str, object]]:
    """Propose C on ``leader`` and return (C's index, the results dict) once the
    leader's write of C hangs in its worker thread, ``transport`` then watching."""
    c_index = leader.applied_index(1) + 1
    results: dict[str, object] = {}

    async def propose() -> None:
        results["c"] = await leader.propose(1, _put(b"c", b"3"))

    engine.hold_next_write()
    nursery.start_soon(propose)
    await trio.to_thread.run_sync(engine.holding.wait)
    transport.watching = True
    return c_index, results


async def test_an_entry_one_follower_persisted_waits_for_the_unfinished_write() -> None:
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        nodes, engines, transports = await _cluster(stack)
        leader = nodes[1]
        stepped_before = leader.stats()["frames_stepped_during_write"]
        # Node 3's acknowledgements are held back: only node 2's reaches the leader.
        transports[3].holding = True
        c_index, results = await _propose_c_with_its_write_held(
            nursery, leader, engines[1], transports[1]
        )
        # The append left before the write: node 2 persists C and acknowledges it,
        # and the leader steps the acknowledgement while its write hangs.
        await _wait_until(lambda: leader.status(1).progress[2].match == c_index)
        await _wait_until(lambda: c_index in engines[3].persisted)
        assert leader.stats()["frames_stepped_during_write"] >= stepped_before + 1
        # Raft counts the leader's own copy, so the quorum commits C in its memory...
        assert leader.status(1).hard_state.commit == c_index
        await trio.sleep(0.05)
        # ...but one follower's copy is not a quorum: nothing acts on that commit.
        assert results == {}
        assert leader.applied_index(1) == c_index - 1
        assert c_index not in engines[1].persisted
        assert all(commit < c_index for commit in transports[1].commits_sent)
        assert nodes[2].applied_index(1) == nodes[3].applied_index(1) == c_index - 1

        engines[1].release.set()
        await _wait_until(lambda: "c" in results)
        assert results == {"c": None}
        assert leader.applied_index(1) == c_index
        transports[3].let_go()
        await _wait_until(lambda: min(nodes[i].applied_index(1) for i in (2, 3)) == c_index)
        assert max(transports[1].commits_sent) == c_index


async def test_an_entry_both_followers_persisted_is_answered_before_the_unfinished_write() -> None:
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        nodes, engines, transports = await _cluster(stack)
        leader = nodes[1]
        c_index, results = await _propose_c_with_its_write_held(
            nursery, leader, engines[1], transports[1]
        )
        # Both followers persist C and acknowledge it: a quorum holds it durably
        # without the leader's copy, so the leader applies it and answers at once.
        await _wait_until(lambda: "c" in results)
        assert results == {"c": None}
        assert all(leader.status(1).progress[i].match == c_index for i in (2, 3))
        assert all(c_index in engines[i].persisted for i in (2, 3))
        assert leader.applied_index(1) == c_index
        assert not engines[1].release.is_set()
        assert c_index not in engines[1].persisted
        # The commit index covering C still leaves only after the leader's write.
        await trio.sleep(0.05)
        assert all(commit < c_index for commit in transports[1].commits_sent)
        assert nodes[2].applied_index(1) == nodes[3].applied_index(1) == c_index - 1

        engines[1].release.set()
        await _wait_until(lambda: min(nodes[i].applied_index(1) for i in (2, 3)) == c_index)
        assert c_index in engines[1].persisted
        assert max(transports[1].commits_sent) == c_index
        # Applied once: the cycle after the write skips what was applied during it.
        assert leader.applied_index(1) == c_index
        assert await leader.propose(1, _put(b"c", b"4")) == b"3"


def _ack(term: int, index: int, *, reject: bool = False, from_: int = 2) -> GroupMessage:
    return GroupMessage(
        1, Message(MessageType.APP_RESP, to=1, from_=from_, term=term, index=index, reject=reject)
    )


async def test_only_frames_of_current_term_successful_acks_are_stepped_during_a_write() -> None:
    async with AsyncExitStack() as stack:
        nodes, _, _ = await _cluster(stack)
        leader = nodes[1]
        during = leader._during_write
        term = leader.status(1).hard_state.term
        last = leader.applied_index(1)
        # Between writes nothing is taken: the driver steps frames in its next turn.
        assert not during.writing
        assert not during.take(Frame(2, 1, [_ack(term, last)]))
        during.writing = True
        try:
            refused = {
                "a rejection": Frame(2, 1, [_ack(term, last, reject=True)]),
                "an older term": Frame(2, 1, [_ack(term - 1, last)]),
                "a heartbeat response alongside": Frame(
                    2,
                    1,
                    [_ack(term, last)],
                    heartbeat_responses=[HeartbeatRecord(1, 2, 1, term, last)],
                ),
                "an append for a follower": Frame(
                    2, 1, [GroupMessage(1, Message(MessageType.APP, to=1, from_=2, term=term))]
                ),
                "an unknown group": Frame(2, 1, [GroupMessage(7, _ack(term, last).message)]),
                "a message for another node": Frame(
                    2, 1, [GroupMessage(1, Message(MessageType.APP_RESP, to=3, from_=2, term=term))]
                ),
            }
            before = leader.stats()["frames_stepped_during_write"]
            taken = {what: during.take(frame) for what, frame in refused.items()}
            assert taken == dict.fromkeys(refused, False)
            assert leader.stats()["frames_stepped_during_write"] == before
            # A keepalive is noted at once: it only proves its sender alive.
            received = leader.stats()["frames_received"]
            assert during.take(Frame(2, 1))
            assert leader.stats()["frames_received"] == received + 1
            assert during.take(Frame(2, 1, [_ack(term, last), _ack(term, last, from_=3)]))
            assert leader.stats()["frames_stepped_during_write"] == before + 1
            # A frame queued before the write began is taken first when it may be...
            queued = Frame(3, 1, [_ack(term, last, from_=3)])
            leader._inbound.items.append(queued)
            assert during.take(Frame(3, 1, [_ack(term, last, from_=3)]))
            assert leader._inbound.items == []
            assert leader.stats()["frames_stepped_during_write"] == before + 3
            # ...and one that must wait holds back the later ones from its node only.
            waiting = Frame(2, 1, [_ack(term, last, reject=True)])
            leader._inbound.items.append(waiting)
            assert not during.take(Frame(2, 1, [_ack(term, last)]))
            assert leader._inbound.items == [waiting]
            assert during.take(Frame(3, 1, [_ack(term, last, from_=3)]))
            assert leader.stats()["frames_stepped_during_write"] == before + 4
        finally:
            during.writing = False
