"""Link-level faults on top of the memory network, applied by wrapping each node's transport.

:class:`~transport.memory.MemoryNetwork` already loses, delays, duplicates and
reorders frames and isolates nodes. :class:`LinkFaults` adds what a schedule
needs per directed link ``(src, dst)``:

* **cuts**: frames on a cut link are refused at once, as a real transport
  refuses a send to an unreachable peer. Cutting one direction only gives an
  asymmetric partition; cutting a pair while both still reach a third node gives
  a non-transitive one.
* **stale-only appends** (the pattern of figure 8 of the Raft paper): on such a
  link an append message loses every entry of its sender's current term (the
  leader's new entries) and keeps the older ones before them. A new leader can
  then re-replicate an earlier term's entry to a majority without its own
  entries following: exactly the situation where counting replicas of an older
  entry would commit it unsafely.
* **short appends**: an append message with several entries keeps a random
  prefix of them (what a smaller ``max_size_per_msg`` would have sent).

The last two only ever produce messages a correct leader could have sent (an
append carrying a prefix of its entries; the follower commits no further than
the last entry it received), so they never make a correct implementation fail.

:class:`SimTransport` wraps one node's :class:`~transport.memory.MemoryTransport`:
it shows every frame to a :class:`FrameObserver` as the node sent it, then
applies the link faults.
"""

from __future__ import annotations

import random
from typing import Protocol

import attrs

from multiraft.frames import Frame, GroupMessage, SnapshotOutcome
from multiraft.ports import Transport
from multiraft.raft.types import Message, MessageType

__all__ = ["FrameObserver", "LinkFaults", "SimTransport"]

_APP = MessageType.APP
Link = tuple[int, int]


class FrameObserver(Protocol):
    """Told about every frame a node hands to its transport."""

    def on_frame(self, src: int, dst: int, frame: Frame) -> None:
        """``src`` sends ``frame`` to ``dst`` (before any fault)."""
        ...


class LinkFaults:
    """Per-link faults the simulator's schedule turns on and off."""

    __slots__ = ("cut", "rng", "short_append_rate", "stale_only", "trimmed_appends")

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.cut: set[Link] = set()
        self.stale_only: set[Link] = set()
        #: Probability that an append with several entries keeps only a prefix of them.
        self.short_append_rate = 0.0
        #: Append messages whose entries were trimmed so far.
        self.trimmed_appends = 0

    def cut_both(self, a: int, b: int) -> None:
        """Cut the links between ``a`` and ``b`` in both directions."""
        self.cut.add((a, b))
        self.cut.add((b, a))

    def isolate(self, node: int, nodes: list[int]) -> None:
        """Cut ``node`` off from every other node of ``nodes``."""
        for other in nodes:
            if other != node:
                self.cut_both(node, other)

    def clear(self) -> None:
        """Lift every cut and append filter."""
        self.cut.clear()
        self.stale_only.clear()
        self.short_append_rate = 0.0

    def reaches(self, src: int, dst: int) -> bool:
        """Whether a frame from ``src`` to ``dst`` passes the cuts."""
        return (src, dst) not in self.cut

    def filter(self, src: int, dst: int, frame: Frame) -> Frame:
        """The frame as it goes on the link: append entries trimmed where configured."""
        stale = (src, dst) in self.stale_only
        short = self.short_append_rate
        if not (stale or short) or not frame.messages:
            return frame
        changed = False
        out: list[GroupMessage] = []
        for gm in frame.messages:
            m = gm.message
            if m.type is _APP and m.entries:
                trimmed = self._trim(m, stale, short)
                if trimmed is not m:
                    changed = True
                    self.trimmed_appends += 1
                    gm = GroupMessage(gm.group_id, trimmed)
            out.append(gm)
        if not changed:
            return frame
        return Frame(
            frame.from_node, frame.to_node, out, frame.heartbeats, frame.heartbeat_responses
        )

    def _trim(self, m: Message, stale: bool, short: float) -> Message:
        entries = m.entries
        keep = len(entries)
        if stale:
            keep = 0
            while keep < len(entries) and entries[keep].term < m.term:
                keep += 1
        if short and keep > 1 and self.rng.random() < short:
            keep = self.rng.randrange(0, keep)
        if keep == len(entries):
            return m
        return attrs.evolve(m, entries=entries[:keep])


class SimTransport:
    """One node's transport in the simulation: observed, then subject to link faults."""

    __slots__ = ("faults", "inner", "node_id", "observer", "refused")

    def __init__(
        self, inner: Transport, node_id: int, faults: LinkFaults, observer: FrameObserver
    ) -> None:
        self.inner = inner
        self.node_id = node_id
        self.faults = faults
        self.observer = observer
        #: Frames refused because their link was cut.
        self.refused = 0

    def send(self, to_node: int, frame: Frame) -> bool:
        """Observe ``frame``, then refuse it on a cut link or pass it on, trimmed if need be."""
        src = self.node_id
        self.observer.on_frame(src, to_node, frame)
        faults = self.faults
        if not faults.reaches(src, to_node):
            self.refused += 1
            return False
        return self.inner.send(to_node, faults.filter(src, to_node, frame))

    async def receive(self) -> Frame | SnapshotOutcome:
        """The next incoming frame or snapshot outcome."""
        return await self.inner.receive()

    async def aclose(self) -> None:
        """Close the underlying transport."""
        await self.inner.aclose()
