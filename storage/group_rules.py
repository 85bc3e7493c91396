"""What one :class:`~multiraft.ports.GroupWrite` does to a group's log, decided up front.

Both durable adapters (the segment log engine and the SQLite reference) turn a
``GroupWrite`` into a :class:`GroupPlan` before touching the disk, so a batch
with an invalid write fails as a whole and nothing of it is persisted. The
rules are those of :class:`storage.memory_engine.MemoryLogEngine` (etcd's
``MemoryStorage``): an incoming snapshot not newer than the stored one raises
``SnapOutOfDateError``; entries leaving a gap raise ``ValueError``; entries
already compacted are skipped; a conflicting suffix is truncated; a created
snapshot older than the stored one is dropped, one of a compacted index raises
``CompactedError`` and one whose term differs from the log raises
``ValueError``; a compaction at or below the dummy entry is skipped and one
past the last index raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from multiraft.ports import GroupWrite
from multiraft.raft.errors import CompactedError, SnapOutOfDateError
from multiraft.raft.types import ConfState, Entry, HardState, Snapshot

__all__ = ["GroupPlan", "GroupPosition", "plan_group_write"]


class GroupPosition(Protocol):
    """Where a group's log stands before a write."""

    def snapshot_index(self) -> int:
        """Index of the stored snapshot (0 when none)."""
        ...

    def dummy(self) -> tuple[int, int]:
        """Index and term of the dummy entry (the last compacted one)."""
        ...

    def last(self) -> int:
        """Index of the last entry."""
        ...

    def stored_term(self, i: int) -> int:
        """Term of entry ``i``, for ``dummy index <= i <= last``."""
        ...


class GroupPlan:
    """The normalized effect of one group's write, applied in this order.

    ``snapshot`` resets the log; ``truncate_after`` (when not None) drops the
    entries after that index; ``entries`` are appended right after the last
    entry; then ``hard_state``, ``conf_state``, ``stored_snapshot``, and
    ``compact_to`` (0 for none) with ``compact_term``, the term of that index.
    """

    __slots__ = (
        "compact_term",
        "compact_to",
        "conf_state",
        "entries",
        "group_id",
        "hard_state",
        "snapshot",
        "stored_snapshot",
        "truncate_after",
    )

    def __init__(self, group_id: int) -> None:
        self.group_id = group_id
        self.snapshot: Snapshot | None = None
        self.truncate_after: int | None = None
        self.entries: Sequence[Entry] = ()
        self.hard_state: HardState | None = None
        self.conf_state: ConfState | None = None
        self.stored_snapshot: Snapshot | None = None
        self.compact_to = 0
        self.compact_term = 0


def plan_group_write(gw: GroupWrite, pos: GroupPosition) -> GroupPlan:
    """Check ``gw`` against the group's position and normalize it (raises on invalid)."""
    plan = GroupPlan(gw.group_id)
    snap_index = pos.snapshot_index()
    dummy_index, dummy_term = pos.dummy()
    last = pos.last()
    snap = gw.snapshot
    if snap is not None:
        meta = snap.metadata
        if meta.index <= snap_index:
            raise SnapOutOfDateError(f"snapshot {meta.index} is not newer than {snap_index}")
        plan.snapshot = snap
        snap_index = dummy_index = last = meta.index
        dummy_term = meta.term
    entries: Sequence[Entry] = gw.entries
    new_first = last + 1
    if entries:
        start = entries[0].index
        n = len(entries)
        if entries[-1].index != start + n - 1:
            raise ValueError(f"entries {start}..{entries[-1].index} are not consecutive")
        first = dummy_index + 1
        if start + n - 1 >= first:
            if start < first:
                entries = entries[first - start :]
                start = first
            if start > last + 1:
                raise ValueError(f"missing log entry [last: {last}, append at: {start}]")
            if start <= last:
                plan.truncate_after = start - 1
            plan.entries = entries
            new_first = start
            last = start + len(entries) - 1
    plan.hard_state = gw.hard_state
    plan.conf_state = gw.conf_state

    created = gw.created_snapshot
    if created is not None and created.metadata.index > snap_index:
        index = created.metadata.index
        if index < dummy_index:
            raise CompactedError(f"snapshot {index} is compacted (first index {dummy_index + 1})")
        if index > last:
            raise ValueError(f"snapshot {index} is out of bound lastindex({last})")
        term = _term_at(index, plan, new_first, dummy_index, dummy_term, pos)
        if term != created.metadata.term:
            raise ValueError(
                f"snapshot at index {index} has term {created.metadata.term}, the log has {term}"
            )
        plan.stored_snapshot = created
    compact_to = gw.compact_to
    if compact_to > dummy_index:
        if compact_to > last:
            raise ValueError(f"compact {compact_to} is out of bound lastindex({last})")
        plan.compact_to = compact_to
        plan.compact_term = _term_at(compact_to, plan, new_first, dummy_index, dummy_term, pos)
    return plan


def _term_at(
    i: int, plan: GroupPlan, new_first: int, dummy_index: int, dummy_term: int, pos: GroupPosition
) -> int:
    if plan.entries and i >= new_first:
        return plan.entries[i - new_first].term
    if i == dummy_index:
        return dummy_term
    return pos.stored_term(i)
