"""The state machine of one range replica: its keys, its bounds, its split history.

Everything here is deterministic in the log: two replicas that applied the same
commands hold the same state, and a replica rebuilt from a snapshot plus the
rest of the log too. Effects outside the state machine (hosting the group a
split creates) are reported to a :class:`RangeObserver`, which the host turns
into asynchronous work in the order the commands were applied.
"""

from __future__ import annotations

from typing import Protocol

import attrs
from sortedcontainers import SortedDict

from examples.rangekv.commands import (
    CasOutcome,
    CompareAndSet,
    Delete,
    ForgetChild,
    InitRange,
    NotReady,
    Put,
    Refused,
    ScanResult,
    SettleReplicas,
    Split,
    SplitOutcome,
    StartMove,
    Value,
    WrongRange,
)
from examples.rangekv.descriptor import RangeDescriptor
from examples.rangekv.wire import unpack
from multiraft.codec import decode, encode

__all__ = ["Move", "RangeObserver", "RangeSnapshot", "RangeStateMachine"]


@attrs.frozen(slots=True)
class Move:
    """A replica move in progress: from node ``source`` to node ``target``."""

    source: int
    target: int


class RangeObserver(Protocol):
    """What a range state machine tells its host, synchronously, while applying."""

    def range_split(self, parent: RangeStateMachine, child: InitRange, campaigner: int) -> None:
        """``parent`` applied a split creating ``child``; ``campaigner`` proposed it."""
        ...

    def range_restored(self, sm: RangeStateMachine) -> None:
        """``sm`` was replaced by a snapshot (its pending children may need hosting)."""
        ...

    def range_written(self, sm: RangeStateMachine) -> None:
        """``sm`` applied a client write (it may have grown past the split threshold)."""
        ...


@attrs.frozen(slots=True)
class RangeSnapshot:
    """The whole replicated state of a range, as stored in raft snapshots."""

    descriptor: RangeDescriptor | None
    move: Move | None
    replicas_version: int
    last_right: RangeDescriptor | None
    children: tuple[InitRange, ...]
    items: tuple[tuple[bytes, bytes], ...]


class RangeStateMachine:
    """One replica of a range (implements multiraft's ``StateMachine`` protocol).

    Before its :class:`InitRange` is applied the range is *not ready*: it knows
    no bounds and answers :class:`NotReady`. Afterwards writes outside
    ``[start, end)`` answer :class:`WrongRange`. A split keeps the moved keys
    in ``children`` until the new range confirms with :class:`ForgetChild`, so
    that they survive in this range's snapshots until the new range holds them.

    A replica move is recorded here first (:class:`StartMove`): from then on the
    descriptor lists both the leaving and the arriving node, and splits are
    refused until :class:`SettleReplicas` records the membership the move ended
    with. ``replicas_version`` counts these changes of the replica set.
    """

    __slots__ = (
        "children",
        "data",
        "data_bytes",
        "descriptor",
        "last_right",
        "move",
        "observer",
        "range_id",
        "replicas_version",
    )

    def __init__(self, range_id: int, observer: RangeObserver | None = None) -> None:
        self.range_id = range_id
        self.observer = observer
        self.descriptor: RangeDescriptor | None = None
        self.data: SortedDict = SortedDict()
        #: Sum of key and value lengths, for the size-based split policy.
        self.data_bytes = 0
        self.move: Move | None = None
        self.replicas_version = 0
        self.last_right: RangeDescriptor | None = None
        self.children: dict[int, InitRange] = {}

    @property
    def ready(self) -> bool:
        """Whether the range applied its :class:`InitRange`."""
        return self.descriptor is not None

    def __repr__(self) -> str:
        where = "not ready" if self.descriptor is None else self.descriptor.describe()
        return f"RangeStateMachine({where}, {len(self.data)} keys)"

    # ------------------------------------------------------------------ apply

    def apply(self, index: int, command: bytes) -> object:
        """Apply one committed command; the outcome goes back to its proposer."""
        cmd = unpack(command)
        match cmd:
            case Put() | Delete() | CompareAndSet():
                return self._write(cmd)
            case InitRange():
                return self._init(cmd)
            case Split():
                return self._split(cmd)
            case ForgetChild(range_id=child_id):
                self.children.pop(child_id, None)
                return Value(None)
            case StartMove():
                return self._start_move(cmd)
            case SettleReplicas():
                return self._settle_replicas(cmd)
        return Refused(f"{type(cmd).__name__} is not a range command")

    def _write(self, cmd: Put | Delete | CompareAndSet) -> object:
        key = cmd.key
        refusal = self.check_key(key)
        if refusal is not None:
            return refusal
        old = self.data.get(key)
        if isinstance(cmd, CompareAndSet):
            if old != cmd.expected:
                return CasOutcome(False, old)
            self._store(key, old, cmd.new)
            outcome: object = CasOutcome(True, cmd.new)
        else:
            self._store(key, old, cmd.value if isinstance(cmd, Put) else None)
            outcome = Value(old)
        if self.observer is not None:
            self.observer.range_written(self)
        return outcome

    def _store(self, key: bytes, old: bytes | None, new: bytes | None) -> None:
        if old is not None:
            self.data_bytes -= len(key) + len(old)
        if new is None:
            if old is not None:
                del self.data[key]
        else:
            self.data[key] = new
            self.data_bytes += len(key) + len(new)

    def _init(self, cmd: InitRange) -> object:
        if self.descriptor is not None:
            return Value(None)  # a second leader proposed it again: already done
        if cmd.descriptor.range_id != self.range_id:
            return Refused(f"InitRange for range {cmd.descriptor.range_id} sent to {self.range_id}")
        self.descriptor = cmd.descriptor
        self.data = SortedDict(cmd.items)
        self.data_bytes = sum(len(k) + len(v) for k, v in cmd.items)
        return Value(None)

    def _split(self, cmd: Split) -> object:
        desc = self.descriptor
        if desc is None:
            return NotReady(self.range_id)
        if self.move is not None:
            return Refused("the range's replicas are changing")
        if cmd.generation != desc.generation:
            return Refused(f"generation {cmd.generation} is stale (now {desc.generation})")
        key = cmd.split_key
        if not (desc.start < key and desc.contains(key)):
            return Refused(f"split key {key!r} is not inside {desc.describe()}")
        data = self.data
        moved = tuple((k, data[k]) for k in data.irange(minimum=key))
        for k, v in moved:
            del data[k]
            self.data_bytes -= len(k) + len(v)
        left = attrs.evolve(desc, end=key, generation=desc.generation + 1)
        right = RangeDescriptor(cmd.right_range_id, key, desc.end, 0, desc.replicas)
        self.descriptor = left
        self.last_right = right
        child = InitRange(right, moved, self.range_id)
        self.children[right.range_id] = child
        if self.observer is not None:
            self.observer.range_split(self, child, cmd.campaigner)
        return SplitOutcome(left, right)

    def _start_move(self, cmd: StartMove) -> object:
        desc = self.descriptor
        if desc is None:
            return NotReady(self.range_id)
        move = Move(cmd.source, cmd.target)
        if self.move == move:
            return Value(None)  # a retry of the move in progress
        if self.move is not None:
            return Refused(f"a move from {self.move.source} to {self.move.target} is in progress")
        if cmd.source not in desc.replicas or cmd.target in desc.replicas:
            return Refused(f"cannot move {desc.describe()} from {cmd.source} to {cmd.target}")
        replicas = tuple(sorted((*desc.replicas, cmd.target)))
        self.descriptor = attrs.evolve(desc, replicas=replicas)
        self.move = move
        self.replicas_version += 1
        return Value(None)

    def _settle_replicas(self, cmd: SettleReplicas) -> object:
        desc = self.descriptor
        if desc is None:
            return NotReady(self.range_id)
        if cmd.version != self.replicas_version:
            return Refused(
                f"replica set version {cmd.version} is stale (now {self.replicas_version})"
            )
        if not cmd.replicas:
            return Refused("a range needs at least one replica")
        self.descriptor = attrs.evolve(desc, replicas=tuple(sorted(cmd.replicas)))
        self.move = None
        self.replicas_version += 1
        return Value(None)

    # ------------------------------------------------------------------ reads

    def check_key(self, key: bytes) -> NotReady | WrongRange | None:
        """Why a write of ``key`` would not apply here now (None: it would, so far).

        Ranges only ever shrink, so a :class:`WrongRange` answer stays true and a
        leader may give it without going through the log.
        """
        desc = self.descriptor
        if desc is None:
            return NotReady(self.range_id)
        if not desc.contains(key):
            return WrongRange(desc, self.last_right)
        return None

    def get(self, key: bytes) -> object:
        """The value of ``key`` here (call after a read barrier for linearizability)."""
        return self.check_key(key) or Value(self.data.get(key))

    def scan(self, start: bytes, end: bytes | None, limit: int) -> object:
        """Up to ``limit`` items in ``[start, end)`` clipped to this range (``start`` inside it)."""
        refusal = self.check_key(start)
        desc = self.descriptor
        if refusal is not None or desc is None:
            return refusal
        stop = desc.end if end is None or (desc.end is not None and desc.end < end) else end
        data = self.data
        keys = data.irange(minimum=start, maximum=stop, inclusive=(True, False))
        items: list[tuple[bytes, bytes]] = []
        for k in keys:
            if len(items) >= limit:
                break
            items.append((k, data[k]))
        return ScanResult(tuple(items), desc.end)

    def middle_key(self) -> bytes | None:
        """The key at the middle of the range (None with fewer than two keys)."""
        n = len(self.data)
        return self.data.peekitem(n // 2)[0] if n >= 2 else None

    # ------------------------------------------------------- snapshot/restore

    def snapshot(self) -> bytes:
        """The range's whole state."""
        return encode(
            RangeSnapshot(
                self.descriptor,
                self.move,
                self.replicas_version,
                self.last_right,
                tuple(self.children.values()),
                tuple(self.data.items()),
            )
        )

    def restore(self, data: bytes) -> None:
        """Replace the state by a snapshot's."""
        snap = decode(data, RangeSnapshot)
        self.descriptor = snap.descriptor
        self.move = snap.move
        self.replicas_version = snap.replicas_version
        self.last_right = snap.last_right
        self.children = {c.descriptor.range_id: c for c in snap.children}
        self.data = SortedDict(snap.items)
        self.data_bytes = sum(len(k) + len(v) for k, v in snap.items)
        if self.observer is not None:
            self.observer.range_restored(self)
