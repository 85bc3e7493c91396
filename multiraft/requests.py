"""Requests callers queue for the driver, run against the groups' RawNodes in one place.

Callers (``propose``, ``read``, ``campaign``...) never touch a ``RawNode``: they
queue an operation on the replica and wait for its outcome. The driver runs the
queued operations of every group once per turn, in arrival order, except that
the proposals a group gathered are handed to raft together: one
``propose_batch`` (one append, one broadcast) instead of one proposal each.
"""

from __future__ import annotations

from collections.abc import Callable

from multiraft.errors import GroupFailedError
from multiraft.groups import GroupTable
from multiraft.proposals import Proposal
from multiraft.raft.errors import ProposalDroppedError
from multiraft.raft.types import StateType
from multiraft.replica import Replica

__all__ = ["RequestQueue", "track_index"]

_LEADER = StateType.LEADER
_CAMPAIGN = Replica.campaign


def track_index(r: Replica, seq: int) -> None:
    """Remember at which index a proposal of this leader went, to detect its loss."""
    raft = r.rawnode.raft
    if raft.state is _LEADER:
        r.writable_index_waiters()[raft.raft_log.last_index()] = seq


class RequestQueue:
    """The groups with queued operations, in the order they got their first one."""

    __slots__ = ("_pending", "_signal", "_table")

    def __init__(self, table: GroupTable, signal: Callable[[], None]) -> None:
        self._table = table
        self._signal = signal
        self._pending: list[Replica] = []

    def __bool__(self) -> bool:
        return bool(self._pending)

    def add(self, r: Replica, op: Callable[[Replica], None] | Proposal) -> None:
        """Queue ``op`` for ``r`` and wake the driver."""
        ops = r.ops
        if isinstance(ops, list):
            ops.append(op)
        else:
            self._pending.append(r)
            r.ops = [op]
        self._signal()

    def run(self) -> None:
        """Run every queued operation (the driver calls this once per turn)."""
        if not self._pending:
            return
        pending = self._pending
        self._pending = []
        table = self._table
        dirty = table.dirty
        for r in pending:
            ops = r.ops
            r.ops = ()
            if r.removed:
                continue
            if r.failed is not None:
                r.fail_all(GroupFailedError(r.group_id, r.failed))
                continue
            table.wake(r)
            if any(op is not _CAMPAIGN for op in ops):
                r.last_active_tick = table.tick
            batch: list[Proposal] = []
            for op in ops:
                if isinstance(op, Proposal):
                    batch.append(op)
                    continue
                if batch:
                    self._propose(r, batch)
                    batch = []
                op(r)
            if batch:
                self._propose(r, batch)
            dirty[r] = None

    def _propose(self, r: Replica, batch: list[Proposal]) -> None:
        self._table.counters.proposal_batches += 1
        _propose(r, batch)


def _propose(r: Replica, batch: list[Proposal]) -> None:
    rn = r.rawnode
    try:
        if len(batch) == 1:
            rn.propose(batch[0].data)
        else:
            rn.propose_batch([p.data for p in batch])
    except ProposalDroppedError as exc:
        waiters = r.proposal_waiters
        for p in batch:
            waiters.pop(p.seq, None)
            p.waiter.set_error(exc)
        return
    raft = rn.raft
    if raft.state is _LEADER:
        # The batch went to the end of the leader's log, in order.
        index_waiters = r.writable_index_waiters()
        first = raft.raft_log.last_index() - len(batch) + 1
        for k, p in enumerate(batch):
            index_waiters[first + k] = p.seq
