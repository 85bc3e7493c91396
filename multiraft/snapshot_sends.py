"""At most one snapshot in flight per group, and a cap on snapshots in flight per node.

A snapshot is the largest thing a node sends. Raft asks its storage for one
whenever a follower needs entries the log no longer has; while one snapshot of a
group is still on its way (the transport has not reported its fate), a second
one for another follower would only compete for the same link and memory. So
the storage view raft reads through (:class:`GatedStorage`) answers
``snapshot()`` with ``SnapshotTemporarilyUnavailableError`` while the group has
a snapshot in flight or the node has ``limit`` of them in flight. Raft then
leaves that follower's progress as it was (no snapshot state) and asks again
later (on its next heartbeat response), once the gate opened.

The snapshot handed out must also be usable: a follower refuses one whose
membership does not list it, so a snapshot older than the group's last
membership change is useless to a member added since. When the stored one is
that old, the gate asks the node's :class:`SnapshotSource` for a current one,
which takes it now or answers ``SnapshotTemporarilyUnavailableError`` and
takes it before raft asks again.
"""

from __future__ import annotations

from typing import Protocol

from multiraft.ports import GroupStorage
from multiraft.raft.errors import SnapshotTemporarilyUnavailableError
from multiraft.raft.storage import NO_LIMIT
from multiraft.raft.types import ConfState, Entry, HardState, Snapshot

__all__ = ["GatedStorage", "SnapshotSends", "SnapshotSource"]


class SnapshotSource(Protocol):
    """Where the gate gets a snapshot no older than the group's membership."""

    def current(self, group_id: int, stored: Snapshot) -> Snapshot:
        """``stored`` if it is recent enough to send, else a newer snapshot of the
        group; raises ``SnapshotTemporarilyUnavailableError`` when none can be
        taken at once (one is then prepared for raft's next attempt)."""
        ...


class SnapshotSends:
    """The groups with a snapshot in flight (handed to raft, fate not yet reported)."""

    __slots__ = ("_groups", "limit", "refused", "source")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._groups: set[int] = set()
        #: Snapshots refused because the group or the node had too many in flight.
        self.refused = 0
        #: Checks each stored snapshot before it is sent (None: sent as stored).
        self.source: SnapshotSource | None = None

    def __len__(self) -> int:
        return len(self._groups)

    def __contains__(self, group_id: object) -> bool:
        return group_id in self._groups

    def try_reserve(self, group_id: int) -> bool:
        """Reserve the group's one slot (and one of the node's); False if none is free."""
        groups = self._groups
        if group_id in groups or len(groups) >= self.limit:
            self.refused += 1
            return False
        groups.add(group_id)
        return True

    def finished(self, group_id: int) -> None:
        """The group's snapshot was delivered, failed, or will never be sent."""
        self._groups.discard(group_id)


class GatedStorage:
    """A group's storage as raft sees it: the engine's view, with snapshots gated."""

    __slots__ = ("_group_id", "_inner", "_sends")

    def __init__(self, inner: GroupStorage, group_id: int, sends: SnapshotSends) -> None:
        self._inner = inner
        self._group_id = group_id
        self._sends = sends

    @property
    def inner(self) -> GroupStorage:
        """The engine's view of the group."""
        return self._inner

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and membership."""
        return self._inner.initial_state()

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries in ``[lo, hi)`` (see the raft ``Storage`` protocol)."""
        return self._inner.entries(lo, hi, max_size)

    def term(self, i: int) -> int:
        """Term of entry ``i``."""
        return self._inner.term(i)

    def last_index(self) -> int:
        """Index of the last entry."""
        return self._inner.last_index()

    def first_index(self) -> int:
        """Index of the first entry still in the log."""
        return self._inner.first_index()

    def snapshot(self) -> Snapshot:
        """A snapshot to send, reserving the group's send slot.

        The stored one, or a newer one from the node's snapshot source when the
        stored one predates the group's membership. Raises
        ``SnapshotTemporarilyUnavailableError`` while no slot is free or no
        current snapshot can be had yet.
        """
        sends = self._sends
        group_id = self._group_id
        if not sends.try_reserve(group_id):
            raise SnapshotTemporarilyUnavailableError(
                f"group {group_id}: a snapshot is already in flight"
                " (for this group or up to the node's limit)"
            )
        try:
            snap = self._inner.snapshot()
            source = sends.source
            return snap if source is None else source.current(group_id, snap)
        except BaseException:
            sends.finished(group_id)
            raise
