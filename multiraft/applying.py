"""Applying what a ready cycle committed: membership changes, commands, snapshots.

After a cycle persisted and sent everything, each group's committed entries go
to raft (membership changes) and to its state machine (commands); results go
back to the callers waiting on this node, and the group's ``RawNode`` is
advanced. Commands whose entries were persisted in an earlier cycle may be
applied before the cycle's write (:meth:`Applier.apply_persisted`). A
``blocking`` state machine is driven from a worker thread instead, so a slow
group does not stall the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from multiraft.fresh_snapshots import FreshSnapshots
from multiraft.groups import GroupTable
from multiraft.proposals import decode_header
from multiraft.raft.errors import ProposalDroppedError, RaftError
from multiraft.raft.rawnode import Ready
from multiraft.raft.types import (
    ConfChange,
    ConfChangeV2,
    Entry,
    EntryType,
    Snapshot,
    SnapshotMetadata,
    StateType,
)
from multiraft.replica import AppliedBatch, Replica

__all__ = ["Applier"]

_log = logging.getLogger("multiraft.node")

_NORMAL = EntryType.NORMAL
_LEADER = StateType.LEADER

#: Starts a task in the node's nursery: ``start_soon(fn, *args)``.
StartSoon = Callable[..., Any]


class Applier:
    """Applies one group's Ready after it was persisted and sent, then advances it."""

    __slots__ = ("_conf_change", "_limiter", "_settled", "_signal", "_start_soon", "_table")

    def __init__(
        self,
        table: GroupTable,
        start_soon: StartSoon,
        signal: Callable[[], None],
        settled: Callable[[Replica], None],
    ) -> None:
        """``settled(r)`` is called after each advance of a leader with nothing to do."""
        self._table = table
        self._settled = settled
        self._start_soon = start_soon
        self._signal = signal
        self._conf_change = self._apply_conf_change
        #: Worker threads applying for blocking state machines at once.
        self._limiter = trio.CapacityLimiter(4)
        table.snapshot_sends.source = FreshSnapshots(table, start_soon, signal, self._limiter)

    def apply_persisted(self, r: Replica, rd: Ready, persisted: int) -> int:
        """Apply the commands that lead ``rd``'s committed entries, up to index ``persisted``.

        Runs before ``rd`` is written: only for entries this node persisted in an
        earlier cycle (committed, so durable on a quorum and here), and only up to
        the first membership change. Results go to their callers at once. Returns
        how many leading entries are now applied (counting those applied earlier,
        while a write was in flight); :meth:`apply` skips them after the write.
        Not for blocking state machines, nor for a ``Ready`` with a snapshot.
        """
        ents = rd.committed_entries
        start = _applied_already(r, ents)
        return start + self.apply_committed(r, ents[start:] if start else ents, persisted)

    def apply_committed(self, r: Replica, ents: list[Entry], upto: int | None = None) -> int:
        """Apply the leading commands of the committed ``ents`` (up to index ``upto``,
        and up to the first membership change) and answer their callers at once.

        For entries persisted here; returns how many were applied.
        """
        n = 0
        for e in ents:
            if (upto is not None and e.index > upto) or e.type is not _NORMAL:
                break
            n += 1
        if n:
            part = ents if n == len(ents) else ents[:n]
            self._deliver(r, r.apply_commands(part), part)
            self._table.counters.entries_applied_before_write += n
        return n

    def apply(self, r: Replica, rd: Ready, skip: int = 0) -> None:
        """Apply ``rd`` to ``r`` and advance its ``RawNode`` (or hand it to a thread).

        ``skip``: leading committed entries :meth:`apply_persisted` applied already.
        """
        snap = rd.snapshot
        if snap is not None and snap.metadata.index <= r.applied:
            # The initial snapshot of a new group: persisted, its state is there already.
            snap = None
        if r.blocking and (rd.committed_entries or snap is not None):
            self._apply_in_thread(r, rd, snap)
            return
        if snap is not None:
            self._restored(r, snap)
        ents = rd.committed_entries
        # Entries applied while an earlier write was in flight come round again.
        skip = max(skip, _applied_already(r, ents))
        if skip:
            ents = ents[skip:]
        if ents:
            batch = r.apply_commands(ents, self._conf_change)
            if batch.stopped:
                return
            self._deliver(r, batch, ents)
        self._advance(r, rd)

    def _advance(self, r: Replica, rd: Ready) -> None:
        rn = r.rawnode
        rn.advance(rd)
        if r.wants_campaign:
            r.campaign()
        if r.pending_write is not None or rn.has_ready():
            self._table.dirty[r] = None
        elif rn.raft.state is _LEADER:
            self._settled(r)

    # ------------------------------------------------------------ snapshots

    def _restored(self, r: Replica, snap: Snapshot) -> None:
        r.restore(snap)
        self._table.counters.snapshots_restored += 1
        self._after_restore(r, snap)

    def _after_restore(self, r: Replica, snap: Snapshot) -> None:
        meta = snap.metadata
        if r.corrupt and not self._table.is_corrupt(r.group_id):
            # The engine persisted the leader's snapshot over the damaged log.
            self._table.repaired(r)
            _log.info("group %d: damaged log repaired by a snapshot at %d", r.group_id, meta.index)
        self._table.set_conf_state(r, meta.conf_state, meta.index)
        r.index_waiters = {i: s for i, s in r.index_waiters.items() if i > meta.index}

    # ----------------------------------------------------------- membership

    def _apply_conf_changes(self, r: Replica, ents: list[Entry]) -> bool:
        """Apply the membership changes among ``ents``; False if that stopped the group."""
        return all(e.type is _NORMAL or self._apply_conf_change(r, e) for e in ents)

    def _apply_conf_change(self, r: Replica, e: Entry) -> bool:
        """Apply the membership change entry ``e``; False if that stopped the group."""
        table = self._table
        cc: ConfChange | ConfChangeV2
        try:
            if e.type is EntryType.CONF_CHANGE:
                cc = ConfChange.from_bytes(e.data)
            else:
                cc = ConfChangeV2.from_bytes(e.data)
        except ValueError:
            _log.error("group %d: undecodable conf change at %d", r.group_id, e.index)
            return True
        try:
            cs = r.rawnode.apply_conf_change(cc)
        except (AssertionError, RaftError) as exc:
            # A committed change raft cannot apply: this replica cannot go on.
            table.fail(r, exc)
            return False
        # Not persisted on its own: after a restart raft starts from the snapshot's
        # membership and re-applies the changes logged after it, in order. A
        # membership persisted as of a later index would be applied twice (a joint
        # configuration cannot be entered again: the group would fail).
        table.set_conf_state(r, cs, e.index)
        r.last_active_tick = table.tick
        proposer, seq = decode_header(cc.context)
        if proposer == table.node_id:
            waiter = r.proposal_waiters.pop(seq, None)
            if waiter is not None:
                waiter.set_result(cs)
        return True

    # ------------------------------------------------------------- results

    def _deliver(self, r: Replica, batch: AppliedBatch, ents: list[Entry]) -> None:
        table = self._table
        node_id = table.node_id
        waiters = r.proposal_waiters
        table.counters.commands_applied += len(batch.results)
        if batch.results:
            r.last_active_tick = table.tick
        if waiters:
            for _, proposer, seq, value, failed in batch.results:
                if proposer != node_id:
                    continue
                waiter = waiters.pop(seq, None)
                if waiter is None:
                    continue
                if failed:
                    assert isinstance(value, BaseException)
                    waiter.set_error(value)
                else:
                    waiter.set_result(value)
        if r.index_waiters:
            index_waiters = r.index_waiters
            for e in ents:
                lost = index_waiters.pop(e.index, None)
                if lost is None:
                    continue
                waiter = waiters.pop(lost, None)
                if waiter is not None:
                    waiter.set_error(
                        ProposalDroppedError(
                            f"group {r.group_id}: the entry at index {e.index} was replaced"
                            " (leadership changed or the proposal was refused)"
                        )
                    )
        if r.reads_awaiting_apply:
            r.release_reads()
        if batch.snapshot_data is not None:
            meta = SnapshotMetadata(r.conf_state, batch.applied, batch.applied_term)
            w = r.write_for_next_batch()
            w.created_snapshot = Snapshot(meta, batch.snapshot_data)
            keep = table.policy.keep_entries
            w.compact_to = batch.applied - keep if batch.applied > keep else 0
            table.counters.snapshots_taken += 1
            table.dirty[r] = None

    # ------------------------------------------------- blocking state machines

    def _apply_in_thread(self, r: Replica, rd: Ready, snap: Snapshot | None) -> None:
        """Hand a blocking state machine's work to a worker thread; advance when done."""
        r.applying = rd
        ents = rd.committed_entries
        if snap is not None:
            self._after_restore(r, snap)
        if ents and not self._apply_conf_changes(r, ents):
            r.applying = None
            return
        self._start_soon(self._run_applier, r, rd, snap)

    async def _run_applier(self, r: Replica, rd: Ready, snap: Snapshot | None) -> None:
        ents = rd.committed_entries

        def work() -> AppliedBatch:
            if snap is not None:
                r.restore(snap)
            return r.apply_commands(ents) if ents else AppliedBatch()

        batch = await trio.to_thread.run_sync(work, limiter=self._limiter)
        r.applying = None
        if r.removed or r.failed is not None:
            return
        if snap is not None:
            self._table.counters.snapshots_restored += 1
        self._deliver(r, batch, ents)
        self._advance(r, rd)
        self._table.dirty[r] = None
        self._signal()


def _applied_already(r: Replica, ents: list[Entry]) -> int:
    """How many leading entries of ``ents`` ``r`` applied already.

    Raft's own applied index moves when a ``Ready`` is advanced, the replica's
    when it applies: commands applied while a write was in flight (see
    :mod:`multiraft.commits_during_write`) come back in the next ``Ready``.
    """
    if not ents or ents[0].index > r.applied:
        return 0
    return min(len(ents), r.applied - ents[0].index + 1)
