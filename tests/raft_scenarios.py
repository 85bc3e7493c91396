"""Builders shared by the raft behaviour tests: leaders in known states and peer messages.

Every builder drains the member's outgoing messages, so a test starts from silence
and sees exactly what its own inputs cause.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from multiraft.raft import ConfState, Entry, HardState, Message, MessageType, Snapshot
from multiraft.raft.raft import Raft
from raft_harness import new_storage, new_test_raft
from storage import MemoryStorage

__all__ = [
    "SNAPSHOT_INDEX",
    "compacted_leader",
    "entry_indexes",
    "fill_compacted",
    "leader_of",
    "peer_msg",
    "propose",
]

#: Index (and last compacted index) of the snapshot ``compacted_leader`` builds on.
SNAPSHOT_INDEX = 10


def peer_msg(t: MessageType, frm: int, to: int, term: int, **fields: Any) -> Message:
    """A message as a peer would send it (the term must be set: term 0 means local)."""
    return Message(type=t, from_=frm, to=to, term=term, **fields)


def propose(r: Raft, data: bytes = b"somedata") -> None:
    """Propose one normal entry on ``r`` as its own application would."""
    r.step(Message(type=MessageType.PROP, from_=r.id, to=r.id, entries=(Entry(0, 0, data=data),)))


def entry_indexes(m: Message) -> list[int]:
    """The indexes of the entries an append carries."""
    return [e.index for e in m.entries]


def leader_of(peers: Iterable[int], storage: Any = None, **kw: Any) -> Raft:
    """Member 1 elected leader (term ``stored term + 1``) of ``peers``, messages drained.

    Its empty entry is the last one of its log; every follower is in PROBE at that entry.
    """
    peers = list(peers)
    if storage is None:
        storage = new_storage(peers)
    r = new_test_raft(1, 10, 1, storage, **kw)
    r.become_candidate()
    r.become_leader()
    r.read_messages()
    return r


def compacted_leader(storage: MemoryStorage | None = None, **kw: Any) -> Raft:
    """Leader 1 of (1, 2) at term 2 whose log is compacted through ``SNAPSHOT_INDEX``.

    Entries 1..10 (term 1) were committed and compacted into a snapshot; the
    leader's empty entry is index 11. ``storage`` may be a prepared
    ``MemoryStorage``; to wrap the storage, call :func:`fill_compacted` and
    :func:`leader_of` directly instead.
    """
    s = storage if storage is not None else MemoryStorage()
    fill_compacted(s)
    return leader_of([1, 2], s, **kw)


def fill_compacted(s: MemoryStorage) -> Snapshot:
    """Give ``s`` entries 1..10 of term 1, committed, snapshotted and compacted at 10."""
    cs = ConfState(voters=(1, 2))
    s.set_conf_state(cs)
    s.append([Entry(1, i) for i in range(1, SNAPSHOT_INDEX + 1)])
    s.set_hard_state(HardState(term=1, commit=SNAPSHOT_INDEX))
    snap = s.create_snapshot(SNAPSHOT_INDEX, cs)
    s.compact(SNAPSHOT_INDEX)
    return snap
