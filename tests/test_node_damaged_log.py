"""A replica with a damaged durable log neither votes nor acknowledges until a snapshot."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from multiraft import Node, NodeConfig, open_node
from multiraft.frames import Frame
from multiraft.raft import MessageType, ProgressState
from node_cluster import RecordingStateMachine, wait_until
from storage import MemoryLogEngine
from storage.records import RecordType, parse_batch
from storage.recovery import segment_name
from transport import MemoryNetwork

MT = MessageType
#: What a replica that trusts its log would send: granted votes and append acks.
_TRUSTING = {MT.VOTE_RESP, MT.PRE_VOTE_RESP, MT.APP_RESP}


def _flip_first_entries_record(data_dir: Path) -> None:
    """Flip a byte in the payload of the first record holding entries (the node
    hosts one group: its first entry after the initial snapshot)."""
    name = os.path.join(data_dir, segment_name(1))
    with open(name, "rb") as f:
        data = f.read()
    off = 0
    while True:
        pb = parse_batch(data, off, 1)
        assert pb.ok, "no entries record found"
        for rtype, _, poff, plen in pb.records:
            if rtype in (RecordType.ENTRIES, RecordType.ENTRY_SET) and plen > 8:
                with open(name, "r+b") as f:
                    f.seek(poff + plen // 2)
                    byte = f.read(1)[0]
                    f.seek(poff + plen // 2)
                    f.write(bytes([byte ^ 0x5A]))
                return
        off = pb.end


class _Nodes:
    """Nodes 1 and 2 on memory engines kept across restarts, node 3 on a data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.net = MemoryNetwork()
        self.data_dir = data_dir
        self.engines = {1: MemoryLogEngine(), 2: MemoryLogEngine()}

    async def start(self, stack: AsyncExitStack, snapshot_entries: int) -> dict[int, Node]:
        nodes = {}
        for i in (1, 2, 3):
            cfg = NodeConfig(
                i,
                write_in_thread=False,
                snapshot_entries=snapshot_entries,
                snapshot_keep_entries=0,
            )
            engine = self.engines.get(i)
            nodes[i] = await stack.enter_async_context(
                open_node(
                    cfg,
                    transport=self.net.transport(i),
                    log_engine=engine,
                    data_dir=None if engine else self.data_dir,
                )
            )
            await nodes[i].create_group(
                1, [1, 2, 3], state_machine=RecordingStateMachine(), campaign=(i == 1)
            )
        return nodes


async def test_damaged_log_keeps_a_replica_from_voting_and_acking_until_a_snapshot_repairs_it(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    cluster = _Nodes(tmp_path)
    async with AsyncExitStack() as stack:
        # Small snapshots: node 3's damaged first record is behind its own snapshot.
        nodes = await cluster.start(stack, snapshot_entries=5)
        await wait_until(lambda: all(n.leader_of(1) == 1 for n in nodes.values()), 2)
        for k in range(7):
            await nodes[1].propose(1, b"c%d" % k)
        await wait_until(lambda: nodes[3].applied_index(1) == 11, 2, "node 3 applied")
    _flip_first_entries_record(tmp_path)

    sent_by_3: list[tuple[MessageType, bool]] = []

    def record(src: int, dst: int, frame: Frame) -> bool:
        if src == 3:
            sent_by_3.extend((gm.message.type, gm.message.reject) for gm in frame.messages)
            sent_by_3.extend((MT.HEARTBEAT_RESP, False) for _ in frame.heartbeat_responses)
        return False

    cluster.net.set_drop_predicate(record)
    async with AsyncExitStack() as stack:
        # The leader compacts again only after 20 more entries.
        nodes = await cluster.start(stack, snapshot_entries=20)
        assert nodes[3].stats()["corrupt_groups"] == 1
        # Node 1 wins with node 2's vote alone: node 3 grants nothing.
        await wait_until(lambda: nodes[2].leader_of(1) == 1 == nodes[1].leader_of(1), 3)
        await wait_until(lambda: nodes[3].leader_of(1) == 1, 3, "node 3 follows")
        term = nodes[1].status(1).hard_state.term
        assert term == 3
        for k in range(3):
            await nodes[1].propose(1, b"d%d" % k)
        await trio.sleep(1)
        # Node 3 appended (it follows) but acknowledged nothing: the leader still
        # counts it where it was before the restart.
        trusting = [(t, rej) for t, rej in sent_by_3 if t in _TRUSTING and not rej]
        assert trusting == []
        assert not any(t in (MT.VOTE, MT.PRE_VOTE) for t, _ in sent_by_3)
        # It still answers heartbeats, so the leader keeps probing it.
        assert (MT.HEARTBEAT_RESP, False) in sent_by_3
        assert nodes[1].status(1).progress[3].match <= 11
        assert nodes[3].stats()["corrupt_groups"] == 1
        # Enough commands for the leader to compact past what node 3 has: its next
        # probe finds the entries gone and sends the snapshot that repairs node 3.
        for k in range(20):
            await nodes[1].propose(1, b"e%d" % k)
        last = nodes[1].status(1).hard_state.commit

        def repaired() -> bool:
            pr = nodes[1].status(1).progress[3]
            return (pr.state, pr.match) == (ProgressState.REPLICATE, last)

        await wait_until(repaired, 5, "node 3 repaired")
        assert nodes[3].stats()["corrupt_groups"] == 0
        assert nodes[3].stats()["snapshots_restored"] >= 1
        assert nodes[3].applied_index(1) == last
        assert any(t == MT.APP_RESP and not rej for t, rej in sent_by_3)
