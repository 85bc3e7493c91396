"""A log engine that keeps every group's log in memory (no durability).

The coordinator uses it when no data directory is given. Handing the same
engine to a restarted node recovers the groups, as a durable engine would
after a clean shutdown.
"""

from __future__ import annotations

import contextlib
import time

from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.errors import CompactedError, SnapOutOfDateError
from storage.memory import MemoryStorage

__all__ = ["MemoryLogEngine"]


class MemoryLogEngine:
    """The ``LogEngine`` port over one :class:`MemoryStorage` per group.

    ``syncs`` counts calls to :meth:`write` with a synced batch (each stands for
    one durable sync), ``unsynced_writes`` those with ``sync=False``;
    ``last_write_seconds`` is how long the last synced write took.
    """

    __slots__ = (
        "_closed",
        "_groups",
        "_removed",
        "_written",
        "last_write_seconds",
        "syncs",
        "unsynced_writes",
    )

    def __init__(self) -> None:
        self._groups: dict[int, MemoryStorage] = {}
        self._written: set[int] = set()
        self._removed: set[int] = set()
        self._closed = False
        self.syncs = 0
        self.unsynced_writes = 0
        self.last_write_seconds = 0.0

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the log engine is closed")

    def storage(self, group_id: int) -> MemoryStorage:
        """The storage of ``group_id``, created empty on first use."""
        self._check_open()
        s = self._groups.get(group_id)
        if s is None:
            s = self._groups[group_id] = MemoryStorage()
        return s

    def write(self, batch: WriteBatch) -> None:
        """Apply every group's writes in the order :class:`GroupWrite` documents."""
        began = time.perf_counter()
        self._check_open()
        for gw in batch.groups:
            self._apply(gw)
        if batch.sync:
            self.syncs += 1
            self.last_write_seconds = time.perf_counter() - began
        else:
            self.unsynced_writes += 1

    def _apply(self, gw: GroupWrite) -> None:
        s = self.storage(gw.group_id)
        self._written.add(gw.group_id)
        # As in the durable engine, a removed group written again comes back.
        self._removed.discard(gw.group_id)
        if gw.snapshot is not None:
            s.apply_snapshot(gw.snapshot)
        if gw.entries:
            s.append(gw.entries)
        if gw.hard_state is not None:
            s.set_hard_state(gw.hard_state)
        if gw.conf_state is not None:
            s.set_conf_state(gw.conf_state)
        if gw.created_snapshot is not None:
            # A newer snapshot (e.g. one received in this batch) may already cover it.
            with contextlib.suppress(SnapOutOfDateError):
                s.store_snapshot(gw.created_snapshot)
        if gw.compact_to:
            # The log may already be compacted that far, for instance by a snapshot.
            with contextlib.suppress(CompactedError):
                s.compact(gw.compact_to)

    def group_ids(self) -> list[int]:
        """Groups that received at least one write and were not removed, ascending."""
        self._check_open()
        return sorted(self._written)

    def remove_group(self, group_id: int) -> None:
        """Drop all state of ``group_id`` and keep a tombstone for it."""
        self._check_open()
        self._groups.pop(group_id, None)
        self._written.discard(group_id)
        self._removed.add(group_id)

    def removed_groups(self) -> list[int]:
        """Tombstones of removed groups, ascending (they survive a node restart on
        this engine, as the durable engine's do)."""
        self._check_open()
        return sorted(self._removed)

    def close(self) -> None:
        """Refuse every later call."""
        self._closed = True
