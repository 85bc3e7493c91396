"""The range directory: the replicated map from keys to ranges (the meta range).

Its entries always tile the key space: it starts with one range covering every
key and changes only by replacing a range with its two halves, exactly as the
range itself split. Splits of one range are recorded in generation order, so an
out-of-order record is refused rather than leaving a gap.

Next to each range it keeps a :class:`Placement`: the version of the replica
set it lists (updates older than it are ignored) and the range's founding
replicas, the nodes that created the range's group with the same bootstrap
membership (a founder that lost its replica recreates it that way, not empty).
"""

from __future__ import annotations

import attrs
from sortedcontainers import SortedDict

from examples.rangekv.commands import (
    AllocateRangeIds,
    IdBlock,
    InitDirectory,
    RecordSplit,
    Refused,
    UpdateReplicas,
    Value,
)
from examples.rangekv.descriptor import RangeDescriptor, range_at
from examples.rangekv.wire import unpack
from multiraft.codec import decode, encode

__all__ = ["DirectorySnapshot", "DirectoryStateMachine", "Placement"]


@attrs.frozen(slots=True)
class Placement:
    """What the directory knows of a range's replicas besides the current list.

    ``version`` is the range's replica-set version the listed replicas reflect;
    ``founders`` are the nodes whose group was bootstrapped with exactly these
    members when the range was created.
    """

    range_id: int
    version: int
    founders: tuple[int, ...]


@attrs.frozen(slots=True)
class DirectorySnapshot:
    """The directory's whole state, as stored in raft snapshots."""

    ranges: tuple[RangeDescriptor, ...]
    next_range_id: int
    placements: tuple[Placement, ...] = ()


class DirectoryStateMachine:
    """One replica of the directory (implements multiraft's ``StateMachine`` protocol)."""

    __slots__ = ("by_id", "by_start", "next_range_id", "placements")

    def __init__(self) -> None:
        self.by_start: SortedDict = SortedDict()
        self.by_id: dict[int, RangeDescriptor] = {}
        self.placements: dict[int, Placement] = {}
        self.next_range_id = 0

    @property
    def ready(self) -> bool:
        """Whether the directory applied its :class:`InitDirectory`."""
        return bool(self.by_id)

    def __len__(self) -> int:
        return len(self.by_id)

    def lookup(self, key: bytes) -> RangeDescriptor | None:
        """The range holding ``key`` (None before initialization)."""
        return range_at(self.by_start, key)

    def descriptors(self) -> list[RangeDescriptor]:
        """Every range, in key order."""
        return list(self.by_start.values())

    # ------------------------------------------------------------------ apply

    def apply(self, index: int, command: bytes) -> object:
        """Apply one committed directory command."""
        cmd = unpack(command)
        match cmd:
            case InitDirectory():
                if not self.by_id:
                    self._put(cmd.first)
                    self._found(cmd.first)
                    self.next_range_id = cmd.next_range_id
                return Value(None)
            case AllocateRangeIds(count=count) if count > 0:
                first = self.next_range_id
                self.next_range_id += count
                return IdBlock(first, count)
            case RecordSplit():
                return self._record_split(cmd)
            case UpdateReplicas():
                return self._update_replicas(cmd)
        return Refused(f"{cmd!r} is not a directory command")

    def _record_split(self, cmd: RecordSplit) -> object:
        left, right = cmd.left, cmd.right
        cur = self.by_id.get(left.range_id)
        if cur is None:
            return Refused(f"range {left.range_id} is not in the directory")
        if cur.generation >= left.generation:
            return Value(None)  # recorded already (a retry)
        # The replica list is kept by UpdateReplicas alone: a split recorded late
        # must not bring back the replicas the range had when it split.
        left = attrs.evolve(left, replicas=cur.replicas)
        if (
            cur.generation != left.generation - 1
            or cur.start != left.start
            or left.end != right.start
            or cur.end != right.end
            or right.range_id in self.by_id
        ):
            return Refused(f"split to {left.describe()} does not follow {cur.describe()}")
        self._put(left)
        self._put(right)
        self._found(right)
        return Value(None)

    def _update_replicas(self, cmd: UpdateReplicas) -> object:
        cur = self.by_id.get(cmd.range_id)
        if cur is None:
            return Refused(f"range {cmd.range_id} is not in the directory")
        placement = self.placements.get(cmd.range_id) or Placement(cmd.range_id, 0, cur.replicas)
        if cmd.version < placement.version:
            return Value(None)  # a newer replica set is recorded already
        self._put(attrs.evolve(cur, replicas=tuple(cmd.replicas)))
        self.placements[cmd.range_id] = attrs.evolve(placement, version=cmd.version)
        return Value(None)

    def _found(self, desc: RangeDescriptor) -> None:
        self.placements[desc.range_id] = Placement(desc.range_id, 0, desc.replicas)

    def placement(self, range_id: int) -> Placement | None:
        """Range ``range_id``'s replica-set version and founders (None: not recorded)."""
        return self.placements.get(range_id)

    def _put(self, desc: RangeDescriptor) -> None:
        self.by_start[desc.start] = desc
        self.by_id[desc.range_id] = desc

    # ------------------------------------------------------- snapshot/restore

    def snapshot(self) -> bytes:
        """The directory's whole state."""
        return encode(
            DirectorySnapshot(
                tuple(self.by_start.values()),
                self.next_range_id,
                tuple(self.placements[rid] for rid in sorted(self.placements)),
            )
        )

    def restore(self, data: bytes) -> None:
        """Replace the state by a snapshot's."""
        snap = decode(data, DirectorySnapshot)
        self.by_start = SortedDict((d.start, d) for d in snap.ranges)
        self.by_id = {d.range_id: d for d in snap.ranges}
        self.placements = {p.range_id: p for p in snap.placements}
        self.next_range_id = snap.next_range_id
