"""Test harness for the raft core: build members and wire them into a lossy network.

``Network`` delivers messages synchronously between :class:`Raft` members (no
persistence step, as etcd's raft tests do), with filters to drop, cut, isolate
and ignore message types.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from multiraft.raft import (
    Config,
    ConfState,
    Entry,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from multiraft.raft.raft import Raft
from storage import MemoryStorage

__all__ = [
    "Blackhole",
    "Network",
    "ids_by_size",
    "new_storage",
    "new_test_config",
    "new_test_raft",
    "next_ents",
    "read_messages",
]


def ids_by_size(size: int) -> list[int]:
    """Member ids 1..size."""
    return list(range(1, size + 1))


def new_storage(
    voters: Iterable[int] = (), learners: Iterable[int] = (), entries: Iterable[Entry] = ()
) -> MemoryStorage:
    """A MemoryStorage whose membership is ``voters``/``learners`` (via an index-0 snapshot)."""
    s = MemoryStorage()
    s.set_conf_state(ConfState(voters=tuple(voters), learners=tuple(learners)))
    ents = list(entries)
    if ents:
        s.append(ents)
    return s


def new_test_config(
    node_id: int, election: int, heartbeat: int, storage: MemoryStorage, **kw: Any
) -> Config:
    """A Config with no message size limit (as etcd's tests) unless overridden."""
    kw.setdefault("max_size_per_msg", (1 << 63) - 1)
    kw.setdefault("max_inflight_msgs", 256)
    return Config(
        id=node_id, election_tick=election, heartbeat_tick=heartbeat, storage=storage, **kw
    )


def new_test_raft(
    node_id: int,
    election: int = 10,
    heartbeat: int = 1,
    storage: MemoryStorage | None = None,
    *,
    peers: Iterable[int] | None = None,
    **kw: Any,
) -> Raft:
    """A Raft member; with ``peers`` and no storage, a fresh storage holding that membership."""
    if storage is None:
        storage = new_storage(peers if peers is not None else [node_id])
    return Raft(new_test_config(node_id, election, heartbeat, storage, **kw))


def read_messages(r: Raft) -> list[Message]:
    """Take the member's outgoing messages."""
    return r.read_messages()


def next_ents(r: Raft, s: MemoryStorage) -> list[Entry]:
    """Persist the unstable entries, then apply and return the committed ones."""
    unstable = r.raft_log.unstable_entries()
    if unstable:
        s.append(unstable)
        r.raft_log.stable_to(unstable[-1].index, unstable[-1].term)
    ents = r.raft_log.next_committed_ents()
    if ents:
        r.raft_log.applied_to(ents[-1].index)
    return ents


class Blackhole:
    """A peer that swallows every message."""

    def step(self, m: Message) -> None:
        """Drop ``m``."""

    def read_messages(self) -> list[Message]:
        """Nothing is ever sent."""
        return []


class Network:
    """Members connected by a synchronous network with drop, cut and ignore filters.

    ``peers`` entries may be a ``Raft`` (used as is; must know the membership),
    ``None`` (a fresh member with all ids as voters) or a :class:`Blackhole`.
    """

    def __init__(
        self,
        *peers: Raft | Blackhole | None,
        config: Callable[[Config], None] | None = None,
        seed: int = 0,
    ) -> None:
        ids = ids_by_size(len(peers))
        self.peers: dict[int, Raft | Blackhole] = {}
        self.storage: dict[int, MemoryStorage] = {}
        for pid, p in zip(ids, peers, strict=True):
            if p is None:
                st = new_storage(ids)
                self.storage[pid] = st
                cfg = new_test_config(pid, 10, 1, st)
                if config is not None:
                    config(cfg)
                    cfg.validate()
                self.peers[pid] = Raft(cfg)
            else:
                self.peers[pid] = p
        self.dropm: dict[tuple[int, int], float] = {}
        self.ignorem: set[MessageType] = set()
        self.msg_hook: Callable[[Message], bool] | None = None
        self.rand = random.Random(seed)

    def raft(self, pid: int) -> Raft:
        """The Raft member ``pid`` (fails for a blackhole)."""
        p = self.peers[pid]
        assert isinstance(p, Raft), f"peer {pid} is not a Raft member"
        return p

    def send(self, *msgs: Message) -> None:
        """Deliver ``msgs`` and everything they cause, until the network is quiet."""
        queue = list(msgs)
        while queue:
            m = queue.pop(0)
            p = self.peers[m.to]
            p.step(m)
            queue.extend(self.filter(p.read_messages()))

    def drop(self, frm: int, to: int, perc: float) -> None:
        """Drop a fraction ``perc`` of the messages from ``frm`` to ``to``."""
        self.dropm[(frm, to)] = perc

    def cut(self, one: int, other: int) -> None:
        """Drop every message between two members, both ways."""
        self.drop(one, other, 2.0)
        self.drop(other, one, 2.0)

    def isolate(self, pid: int) -> None:
        """Cut ``pid`` off from every other member."""
        for other in self.peers:
            if other != pid:
                self.drop(pid, other, 1.0)
                self.drop(other, pid, 1.0)

    def ignore(self, t: MessageType) -> None:
        """Drop every message of type ``t``."""
        self.ignorem.add(t)

    def recover(self) -> None:
        """Remove every filter."""
        self.dropm.clear()
        self.ignorem.clear()

    def filter(self, msgs: list[Message]) -> list[Message]:
        """The messages that survive the current filters."""
        out = []
        for m in msgs:
            if m.type in self.ignorem:
                continue
            if m.type == MessageType.HUP:
                raise AssertionError("HUP must never be sent to a peer")
            perc = self.dropm.get((m.from_, m.to), 0.0)
            if perc > 0 and self.rand.random() < perc:
                continue
            if self.msg_hook is not None and not self.msg_hook(m):
                continue
            out.append(m)
        return out


def snapshot_at(index: int, term: int, voters: Iterable[int], data: bytes = b"") -> Snapshot:
    """A snapshot with the given position and voters."""
    return Snapshot(
        metadata=SnapshotMetadata(
            conf_state=ConfState(voters=tuple(voters)), index=index, term=term
        ),
        data=data,
    )
