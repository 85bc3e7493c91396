"""Snapshots taken on demand, when the stored one is too old to send.

A follower refuses a snapshot whose membership does not list it, so a member
added after the group's last stored snapshot can never catch up from it once
the log before its addition is compacted away: it needs a snapshot at or after
the membership change that added it. Like etcd's server, which builds the
snapshot it sends from the state it has applied, the node then takes one of the
state machine at its applied index, with the membership as of that index, and
stores it as the group's latest (raft gets it from storage from then on).

It is taken at once, inside raft's request, when the state machine is idle on
the event loop. A ``blocking`` state machine is snapshotted in a worker thread;
one that is being applied, or that has not yet re-applied the group's last
membership change (after a restart), is snapshotted later. Raft is told the
snapshot is temporarily unavailable in the meantime and asks again on the
follower's next heartbeat response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from multiraft.groups import GroupTable
from multiraft.raft.errors import SnapshotTemporarilyUnavailableError
from multiraft.raft.rawnode import Ready
from multiraft.raft.types import Snapshot, SnapshotMetadata
from multiraft.replica import Replica

__all__ = ["FreshSnapshots"]

_log = logging.getLogger("multiraft.node")

#: Set as a replica's ``applying`` while a worker thread snapshots its state
#: machine: ready cycles leave the group alone until the snapshot is taken.
_SNAPSHOTTING = Ready()


class FreshSnapshots:
    """The node's :class:`~multiraft.snapshot_sends.SnapshotSource`."""

    __slots__ = ("_limiter", "_signal", "_start_soon", "_table")

    def __init__(
        self,
        table: GroupTable,
        start_soon: Callable[..., Any],
        signal: Callable[[], None],
        limiter: trio.CapacityLimiter,
    ) -> None:
        self._table = table
        self._start_soon = start_soon
        self._signal = signal
        self._limiter = limiter

    def current(self, group_id: int, stored: Snapshot) -> Snapshot:
        """``stored`` if it is no older than the group's last membership change, else
        a newer snapshot; raises ``SnapshotTemporarilyUnavailableError`` while none
        can be taken yet (see the module docstring)."""
        r = self._table.replicas.get(group_id)
        if r is None:
            return stored
        needed = r.conf_index
        if stored.metadata.index >= needed:
            return stored
        pending = r.pending_write
        if pending is not None:
            taken = pending.created_snapshot
            if taken is not None and taken.metadata.index >= needed:
                # Taken already, not yet written: raft may send it meanwhile.
                return taken
        if r.applying is None and r.applied >= needed:
            if not r.blocking:
                return self._store(r, r.state_machine.snapshot())
            r.applying = _SNAPSHOTTING
            self._start_soon(self._take_in_thread, r)
        raise SnapshotTemporarilyUnavailableError(
            f"group {group_id}: the stored snapshot (index {stored.metadata.index}) predates"
            f" the membership of index {needed}; a newer one is on its way"
        )

    async def _take_in_thread(self, r: Replica) -> None:
        try:
            data = await trio.to_thread.run_sync(r.state_machine.snapshot, limiter=self._limiter)
        finally:
            r.applying = None
        if r.removed or r.failed is not None:
            return
        self._store(r, data)
        self._signal()

    def _store(self, r: Replica, data: bytes) -> Snapshot:
        """Record ``data``, the state machine at ``r.applied``, as the group's latest snapshot."""
        index = r.applied
        term = r.rawnode.raft.raft_log.term(index)
        snap = Snapshot(SnapshotMetadata(r.conf_state, index, term), data)
        w = r.write_for_next_batch()
        if w.created_snapshot is None or w.created_snapshot.metadata.index < index:
            w.created_snapshot = snap
        table = self._table
        table.dirty[r] = None
        table.counters.snapshots_taken += 1
        table.counters.snapshots_on_demand += 1
        _log.debug(
            "node %d: group %d: took a snapshot at %d for a member added at %d",
            table.node_id,
            r.group_id,
            index,
            r.conf_index,
        )
        return snap
