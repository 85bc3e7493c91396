"""An in-process network of nodes for tests and simulation, with fault injection.

Frames are handed over as objects (no encoding). Everything random (drops,
delays, duplicates, reordering) comes from one ``random.Random(seed)``, and time
is trio's clock, so a run under trio's ``MockClock`` is reproducible.

Refusals a real transport would see at once (sender or receiver isolated or
crashed, partitioned apart, receiver closed or its inbox full) make ``send``
return False. Losses in flight (``set_drop_rate``, ``set_drop_predicate``) return
True and the frame silently vanishes; a snapshot in it is reported failed to the
sender, one that arrives is reported delivered.
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from collections.abc import Callable, Iterable

import attrs
import trio

from multiraft.codec import encode
from multiraft.frames import Frame, GroupMessage, SnapshotOutcome
from multiraft.raft.types import SnapshotStatus

__all__ = ["MemoryNetwork", "MemoryTransport"]

#: Decides whether a frame is lost: ``predicate(src, dst, frame) -> bool``.
DropPredicate = Callable[[int, int, Frame], bool]

_Link = tuple[int, int]


class MemoryTransport:
    """One node's end of a :class:`MemoryNetwork` (implements the ``Transport`` port)."""

    __slots__ = ("_closed", "_inbox", "_net", "_seq", "_wakeup", "node_id")

    def __init__(self, net: MemoryNetwork, node_id: int) -> None:
        self._net = net
        self.node_id = node_id
        self._inbox: list[tuple[float, int, Frame | SnapshotOutcome]] = []
        self._seq = 0
        self._wakeup = trio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    def send(self, to_node: int, frame: Frame) -> bool:
        """Hand ``frame`` to the network for ``to_node``; False if refused at once."""
        if self._closed:
            return False
        return self._net._send(self.node_id, to_node, frame)

    def _put(self, at: float, item: Frame | SnapshotOutcome) -> bool:
        if self._closed or len(self._inbox) >= self._net.inbox_capacity:
            return False
        self._seq += 1
        heapq.heappush(self._inbox, (at, self._seq, item))
        self._wakeup.set()
        return True

    def _purge(self) -> int:
        n = len(self._inbox)
        self._inbox.clear()
        return n

    async def receive(self) -> Frame | SnapshotOutcome:
        """The next frame or snapshot outcome whose delivery time has come."""
        inbox = self._inbox
        while True:
            if self._closed:
                raise trio.EndOfChannel
            if inbox:
                at = inbox[0][0]
                if at <= trio.current_time():
                    item = heapq.heappop(inbox)[2]
                    if isinstance(item, Frame):
                        self._net._delivered(item)
                    return item
                with trio.move_on_at(at):
                    await self._wakeup.wait()
            else:
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    async def aclose(self) -> None:
        """Close this end: queued frames are discarded, later sends return False."""
        self._closed = True
        self._inbox.clear()
        self._wakeup.set()
        self._net._unregister(self)
        await trio.lowlevel.checkpoint()


def _copy_frame(frame: Frame) -> Frame:
    return Frame(
        frame.from_node,
        frame.to_node,
        [GroupMessage(gm.group_id, attrs.evolve(gm.message)) for gm in frame.messages],
        [attrs.evolve(rec) for rec in frame.heartbeats],
        [attrs.evolve(rec) for rec in frame.heartbeat_responses],
    )


class MemoryNetwork:
    """Many nodes in one process, connected by a deterministic, faulty network.

    Faults: :meth:`set_drop_rate`, :meth:`set_drop_predicate`, :meth:`set_delay`,
    :meth:`set_duplicate_rate`, :meth:`set_reorder`, :meth:`partition`,
    :meth:`isolate`, :meth:`crash`; :meth:`heal` lifts partitions, isolation and
    crashes. Counters are per directed link ``(src, dst)``; ``measure_bytes``
    additionally encodes every frame with the project codec to count its bytes.
    """

    def __init__(
        self, *, seed: int = 0, inbox_capacity: int = 1_000_000, measure_bytes: bool = False
    ) -> None:
        if inbox_capacity <= 0:
            raise ValueError(f"inbox_capacity must be positive, got {inbox_capacity!r}")
        self.seed = seed
        self.inbox_capacity = inbox_capacity
        self.measure_bytes = measure_bytes
        self._random = random.Random(seed)
        self._transports: dict[int, MemoryTransport] = {}
        self._isolated: set[int] = set()
        self._groups_of: dict[int, int] = {}
        self._drop_rate = 0.0
        self._drop_predicate: DropPredicate | None = None
        self._delay = (0.0, 0.0)
        self._duplicate_rate = 0.0
        self._reorder_rate = 0.0
        self._reorder_window = 0.0
        self._frames: defaultdict[_Link, int] = defaultdict(int)
        self._messages: defaultdict[_Link, int] = defaultdict(int)
        self._heartbeats: defaultdict[_Link, int] = defaultdict(int)
        self._heartbeat_frames: defaultdict[_Link, int] = defaultdict(int)
        self._bytes: defaultdict[_Link, int] = defaultdict(int)
        self._dropped: defaultdict[_Link, int] = defaultdict(int)
        self._refused: defaultdict[_Link, int] = defaultdict(int)
        self._frames_delivered = 0

    # ------------------------------------------------------------ endpoints

    def transport(self, node_id: int) -> MemoryTransport:
        """A new transport for ``node_id`` (the previous one must be closed)."""
        old = self._transports.get(node_id)
        if old is not None and not old.closed:
            raise ValueError(f"node {node_id} already has an open transport")
        t = MemoryTransport(self, node_id)
        self._transports[node_id] = t
        return t

    def _unregister(self, t: MemoryTransport) -> None:
        if self._transports.get(t.node_id) is t:
            del self._transports[t.node_id]

    # --------------------------------------------------------------- faults

    def set_drop_rate(self, p: float) -> None:
        """Lose each frame in flight with probability ``p``."""
        self._drop_rate = _probability("p", p)

    def set_drop_predicate(self, predicate: DropPredicate | None) -> None:
        """Lose every frame for which ``predicate(src, dst, frame)`` is true (None: off)."""
        self._drop_predicate = predicate

    def set_delay(self, low: float, high: float | None = None) -> None:
        """Deliver each frame after a delay drawn uniformly from ``[low, high]`` seconds."""
        high = low if high is None else high
        if not 0 <= low <= high:
            raise ValueError(f"delay must satisfy 0 <= low <= high, got {low!r}, {high!r}")
        self._delay = (float(low), float(high))

    def set_duplicate_rate(self, p: float) -> None:
        """Deliver a second copy of each frame with probability ``p``."""
        self._duplicate_rate = _probability("p", p)

    def set_reorder(self, p: float, window: float) -> None:
        """Hold back each frame by up to ``window`` extra seconds with probability ``p``."""
        self._reorder_rate = _probability("p", p)
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window!r}")
        self._reorder_window = float(window)

    def partition(self, *groups: Iterable[int]) -> None:
        """Split the nodes: only nodes in the same set reach each other.

        Nodes named in no set together form one more set. Replaces any earlier
        partition.
        """
        self._groups_of = {}
        for i, group in enumerate(groups, start=1):
            for node in group:
                if node in self._groups_of:
                    raise ValueError(f"node {node} is in two partition sets")
                self._groups_of[node] = i

    def isolate(self, node_id: int) -> None:
        """Cut ``node_id`` off from every other node (both directions)."""
        self._isolated.add(node_id)

    def crash(self, node_id: int) -> None:
        """Isolate ``node_id`` and lose every frame queued for it."""
        self._isolated.add(node_id)
        t = self._transports.get(node_id)
        if t is not None:
            t._purge()

    def recover(self, node_id: int) -> None:
        """Undo :meth:`isolate` / :meth:`crash` for one node."""
        self._isolated.discard(node_id)

    def heal(self) -> None:
        """Lift partitions, isolation and crashes (rates and delays stay as set)."""
        self._groups_of = {}
        self._isolated.clear()

    def can_reach(self, src: int, dst: int) -> bool:
        """Whether a frame from ``src`` to ``dst`` would be accepted right now."""
        if src in self._isolated or dst in self._isolated:
            return False
        return self._groups_of.get(src, 0) == self._groups_of.get(dst, 0)

    # ------------------------------------------------------------- counters

    def frames_sent(self, src: int, dst: int) -> int:
        """Frames ``src`` handed to the network for ``dst`` (refused ones excluded)."""
        return self._frames[(src, dst)]

    def messages_sent(self, src: int, dst: int) -> int:
        """Raft messages in those frames, each coalesced heartbeat record counting one."""
        return self._messages[(src, dst)]

    def heartbeat_records_sent(self, src: int, dst: int) -> int:
        """Coalesced heartbeat and response records in those frames."""
        return self._heartbeats[(src, dst)]

    def heartbeat_frames_sent(self, src: int, dst: int) -> int:
        """Frames among those carrying at least one heartbeat or response record."""
        return self._heartbeat_frames[(src, dst)]

    def bytes_sent(self, src: int, dst: int) -> int:
        """Encoded bytes of those frames (0 unless ``measure_bytes``)."""
        return self._bytes[(src, dst)]

    def frames_dropped(self, src: int, dst: int) -> int:
        """Frames lost in flight by ``set_drop_rate`` or the drop predicate."""
        return self._dropped[(src, dst)]

    def frames_refused(self, src: int, dst: int) -> int:
        """Sends refused at once (``send`` returned False)."""
        return self._refused[(src, dst)]

    @property
    def frames_delivered(self) -> int:
        """Frames handed to a receiver, across all links."""
        return self._frames_delivered

    def total_frames_sent(self) -> int:
        """Frames accepted across all links."""
        return sum(self._frames.values())

    def _delivered(self, frame: Frame) -> None:
        self._frames_delivered += 1

    # ----------------------------------------------------------------- send

    def _send(self, src: int, dst: int, frame: Frame) -> bool:
        link = (src, dst)
        dest = self._transports.get(dst)
        if dest is None or dest.closed or not self.can_reach(src, dst):
            self._refused[link] += 1
            return False
        rnd = self._random
        lost = (self._drop_rate > 0 and rnd.random() < self._drop_rate) or (
            self._drop_predicate is not None and self._drop_predicate(src, dst, frame)
        )
        now = trio.current_time()
        low, high = self._delay
        at = now + (low if low == high else rnd.uniform(low, high))
        if self._reorder_rate > 0 and rnd.random() < self._reorder_rate:
            at += rnd.uniform(0, self._reorder_window)
        if not lost and not dest._put(at, frame):
            self._refused[link] += 1
            return False
        self._frames[link] += 1
        self._messages[link] += frame.message_count()
        records = len(frame.heartbeats) + len(frame.heartbeat_responses)
        if records:
            self._heartbeats[link] += records
            self._heartbeat_frames[link] += 1
        if self.measure_bytes:
            self._bytes[link] += len(encode(frame))
        if lost:
            self._dropped[link] += 1
        elif self._duplicate_rate > 0 and rnd.random() < self._duplicate_rate:
            dest._put(at, _copy_frame(frame))
        if frame.has_snapshot():
            self._report_snapshots(src, frame, at, lost)
        return True

    def _report_snapshots(self, src: int, frame: Frame, at: float, lost: bool) -> None:
        sender = self._transports.get(src)
        if sender is None:
            return
        status = SnapshotStatus.FAILURE if lost else SnapshotStatus.FINISH
        for gm in frame.messages:
            if gm.message.snapshot is not None:
                sender._put(at, SnapshotOutcome(gm.group_id, frame.to_node, status))


def _probability(name: str, p: float) -> float:
    if not isinstance(p, int | float) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)
