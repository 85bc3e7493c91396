"""Ports of the coordinator: what it needs from a log engine and from a transport.

``storage/`` and ``transport/`` hold the adapters; this package never imports
them at module level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

import attrs

from multiraft.frames import Frame, SnapshotOutcome
from multiraft.raft.storage import Storage
from multiraft.raft.types import ConfState, Entry, HardState, Snapshot

__all__ = [
    "CorruptionReportingLog",
    "GroupStorage",
    "GroupWrite",
    "LogEngine",
    "RemovedGroupsLog",
    "TimedLogEngine",
    "Transport",
    "WriteBatch",
]


@attrs.define(slots=True)
class GroupWrite:
    """Everything one group needs persisted in one ready cycle.

    Applied in this order: ``snapshot`` (an incoming snapshot: the log is reset to
    its index), ``entries`` (appended; an entry at or below the last index first
    truncates the conflicting suffix from there, durably), ``hard_state``,
    ``conf_state``, then ``created_snapshot`` (a snapshot the node took itself,
    stored as the latest) and ``compact_to`` (entries up to and including it are
    dropped; 0 = no compaction).
    """

    group_id: int
    entries: list[Entry] = attrs.field(factory=list)
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    conf_state: ConfState | None = None
    created_snapshot: Snapshot | None = None
    compact_to: int = 0

    def holds_only_hard_state(self) -> bool:
        """Whether this write holds nothing but (at most) a hard state."""
        return not (
            self.entries
            or self.snapshot is not None
            or self.conf_state is not None
            or self.created_snapshot is not None
            or self.compact_to
        )


@attrs.define(slots=True)
class WriteBatch:
    """The writes of many groups, made durable together with one sync.

    ``sync=False`` marks a batch that need not be durable on its own: the engine
    writes it without ``fdatasync`` (as etcd does when no ``Ready`` must sync). The
    coordinator sets it only for batches of commit index moves (hard states whose
    term and vote are unchanged, nothing else), which a crash may lose because the
    leader tells the restarted node its commit index again. Such a batch is durable
    once a later synced batch returns; until then a crash may lose it, wholly or
    for some of its groups, along with the unsynced batches written after it.
    """

    groups: list[GroupWrite] = attrs.field(factory=list)
    sync: bool = True

    def __len__(self) -> int:
        return len(self.groups)


class GroupStorage(Storage, Protocol):
    """A group's view of the log engine: the raft ``Storage`` protocol."""


@runtime_checkable
class TimedLogEngine(Protocol):
    """A log engine that says how long its last ``write`` took (optional).

    ``last_write_seconds`` is set by every ``write`` that syncs, before it
    returns; the coordinator reads it on the event loop once the write is done,
    for the ``in_engine`` histogram of ``Node.write_durations()``.
    """

    last_write_seconds: float


class LogEngine(Protocol):
    """A node's log store, shared by all its groups.

    ``write`` is called from one thread at a time (the coordinator runs it through
    ``trio.to_thread``) and returns only once the batch is durable, or, for a
    batch with ``sync=False``, once it is written after every earlier batch (see
    :class:`WriteBatch`). The views returned by ``storage`` reflect a batch as
    soon as ``write`` returns.
    """

    def storage(self, group_id: int) -> GroupStorage:
        """The raft ``Storage`` view of one group (created empty when new)."""
        ...

    def write(self, batch: WriteBatch) -> None:
        """Persist every group's writes with one durable sync (none if ``batch.sync`` is False)."""
        ...

    def group_ids(self) -> Iterable[int]:
        """Groups that have any persisted state (after a restart: what to recover)."""
        ...

    def remove_group(self, group_id: int) -> None:
        """Durably drop all state of a group."""
        ...

    def close(self) -> None:
        """Release files and resources; later calls are errors."""
        ...


@runtime_checkable
class RemovedGroupsLog(Protocol):
    """An optional part of a :class:`LogEngine`: it remembers removed groups.

    An engine whose ``remove_group`` leaves a durable tombstone implements this;
    a node opened on it refuses to host those groups again and drops their
    messages, across restarts. Without it, tombstones last as long as the node.
    """

    def removed_groups(self) -> Iterable[int]:
        """Groups removed from this engine (their tombstones)."""
        ...


@runtime_checkable
class CorruptionReportingLog(Protocol):
    """An optional part of a :class:`LogEngine`: it knows which groups' logs are damaged.

    A node keeps such a group from voting, campaigning and acknowledging appends
    (its log cannot be trusted) until a snapshot from the leader replaced its
    state; the engine clears the flag when it persists that snapshot.
    """

    def corrupted_groups(self) -> Mapping[int, object]:
        """The flagged groups (with what the engine knows of the damage)."""
        ...


class Transport(Protocol):
    """How a node reaches the other nodes; all its groups share one transport.

    ``send`` never blocks the caller (the ready loop): it queues the frame or
    refuses it at once. It returns False when the frame cannot go (peer unknown,
    unreachable, queue full); the node then reports the groups in it unreachable.
    ``receive`` returns the next frame addressed to this node, or the outcome of a
    snapshot this node sent (delivered or failed), which the node turns into
    ``report_snapshot``. After ``aclose``, ``receive`` raises
    ``trio.EndOfChannel`` and ``send`` returns False.
    """

    def send(self, to_node: int, frame: Frame) -> bool:
        """Queue ``frame`` for ``to_node``; False if it was dropped right away."""
        ...

    async def receive(self) -> Frame | SnapshotOutcome:
        """Wait for the next incoming frame or snapshot outcome."""
        ...

    async def aclose(self) -> None:
        """Stop sending and receiving and release resources."""
        ...
