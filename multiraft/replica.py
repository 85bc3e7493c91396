"""One hosted group on one node: its raft member, state machine and pending requests.

The node's driver owns every replica: it alone calls into the ``RawNode``. The
state machine part (:meth:`Replica.apply_commands`, :meth:`Replica.restore`)
touches nothing but the state machine and counters the driver does not read
while it runs, so it may run in a worker thread for a ``blocking`` state machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any, NoReturn

import attrs

from multiraft.ports import GroupStorage, GroupWrite
from multiraft.proposals import HEADER_SIZE, Proposal, Waiter, decode_header
from multiraft.raft.dormant import DormantState, dormant_state
from multiraft.raft.rawnode import RawNode, Ready
from multiraft.raft.types import NONE, ConfState, Entry, EntryType, Snapshot, StateType
from multiraft.state_machine import StateMachine

__all__ = ["AppliedBatch", "Replica", "SnapshotPolicy"]

_log = logging.getLogger("multiraft.replica")

_FOLLOWER = StateType.FOLLOWER
#: What the request lists of a replica hold while empty, which is almost always
#: for most groups of a busy node: no list of their own for the collector to visit.
_NOTHING: tuple[()] = ()


class _NoWaiters(dict[Any, Any]):
    """The waiter maps of a replica without waiters: one shared empty dict.

    Read like any empty dict; writing to it is a bug (the waiter would be
    shared by every replica), so it raises: writers take the replica's own
    map from ``Replica.writable_*_waiters()``.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("the shared empty waiter map is read-only")

    __setitem__ = _refuse
    setdefault = _refuse
    update = _refuse
    __ior__ = _refuse


_NO_WAITERS = _NoWaiters()


@attrs.frozen(slots=True)
class SnapshotPolicy:
    """When a replica snapshots its state machine and compacts its log.

    After ``entries`` applied entries or ``command_bytes`` applied command bytes
    since the last snapshot (0 disables a trigger), keeping ``keep_entries``
    entries in the log behind the snapshot.
    """

    entries: int
    command_bytes: int
    keep_entries: int

    def due(self, entries: int, command_bytes: int) -> bool:
        """Whether a snapshot is due after this much was applied."""
        return (self.entries > 0 and entries >= self.entries) or (
            self.command_bytes > 0 and command_bytes >= self.command_bytes
        )


@attrs.define(slots=True)
class AppliedBatch:
    """What applying committed commands produced, for the driver to deliver.

    ``results`` holds ``(index, proposer node, proposer seq, value, failed)``
    for every applied command; ``snapshot_data`` is set when the policy took a
    snapshot at ``applied``, whose term is ``applied_term``. ``stopped`` says a
    membership change stopped the group midway (nothing after it was applied).
    """

    results: list[tuple[int, int, int, object, bool]] = attrs.field(factory=list)
    applied: int = 0
    applied_term: int = 0
    snapshot_data: bytes | None = None
    stopped: bool = False


class Replica:
    """One group's member on this node."""

    __slots__ = (
        "_raft",
        "_record",
        "applied",
        "applying",
        "blocking",
        "bytes_since_snapshot",
        "campaign_waiters",
        "conf_index",
        "conf_state",
        "corrupt",
        "entries_since_snapshot",
        "failed",
        "group_id",
        "index_waiters",
        "last_active_tick",
        "last_leader",
        "leader",
        "node_id",
        "ops",
        "pending_write",
        "policy",
        "proposal_waiters",
        "quiesced",
        "read_waiters",
        "reads_awaiting_apply",
        "removed",
        "reviver",
        "state_machine",
        "storage",
        "wants_campaign",
    )

    def __init__(
        self,
        group_id: int,
        node_id: int,
        rawnode: RawNode | None,
        storage: GroupStorage,
        state_machine: StateMachine,
        policy: SnapshotPolicy,
        conf_state: ConfState,
        applied: int,
    ) -> None:
        self.group_id = group_id
        self.node_id = node_id
        #: Where the raft member is folded by :meth:`hibernate`: made with the
        #: replica, so that folding allocates nothing that outlives it (in a
        #: node creating thousands of groups at once, an object made at fold
        #: time would keep alive the memory of the raft objects freed around it).
        self._record = DormantState()
        #: The raft member, or its folded record; the empty record until
        #: :meth:`start` for a replica made without its member.
        self._raft: RawNode | DormantState = rawnode if rawnode is not None else self._record
        #: Rebuilds the RawNode of a dormant replica (see :meth:`hibernate`);
        #: None: this replica never hibernates.
        self.reviver: Callable[[Replica, DormantState], RawNode] | None = None
        self.storage = storage
        self.state_machine = state_machine
        self.blocking = bool(getattr(state_machine, "blocking", False))
        self.policy = policy
        self.conf_state = conf_state
        #: The log index ``conf_state`` is as of: a snapshot sent to a follower must
        #: be at least this recent, or it may not list the follower.
        self.conf_index = 0
        #: Index the state machine has applied (restored snapshots included).
        self.applied = applied
        self.entries_since_snapshot = 0
        self.bytes_since_snapshot = 0
        #: Leader last reported by raft (0: none).
        self.leader = 0
        #: The most recent non-zero leader (a hint once the leader is lost).
        self.last_leader = 0
        self.quiesced = False
        self.removed = False
        #: The log engine flagged this group's log as damaged: it must not vote,
        #: campaign or acknowledge appends until a snapshot repaired it.
        self.corrupt = False
        #: Why raft stopped this group (it refused an input as impossible), or None.
        self.failed: str | None = None
        #: The node tick at which the group was last busy: a request queued here
        #: (campaigns aside) or commands applied. Leaders quiesce only once idle
        #: for a whole tick, so a busy group does not sleep between two proposals.
        self.last_active_tick = -2
        #: A campaign waits until the committed membership entries are applied.
        self.wants_campaign = False
        #: The three request lists below are an empty tuple until their first item.
        self.campaign_waiters: list[Waiter] | tuple[()] = _NOTHING
        #: Requests for the driver to run against the RawNode, in order; queued
        #: proposals are gathered into one raft proposal per cycle.
        self.ops: list[Callable[[Replica], None] | Proposal] | tuple[()] = _NOTHING
        #: The three waiter maps below are a shared read-only empty dict until the
        #: first waiter (added through ``writable_*_waiters()``), and again once
        #: the replica folds its raft member away.
        #: Proposals of this node, by sequence number.
        self.proposal_waiters: dict[int, Waiter] = _NO_WAITERS
        #: Leader-side proposals by the index they were appended at, to detect loss.
        self.index_waiters: dict[int, int] = _NO_WAITERS
        #: Read requests by context, until raft answers with a read index.
        self.read_waiters: dict[bytes, Waiter] = _NO_WAITERS
        #: ``(read index, seq, waiter)`` until the state machine applied that far.
        self.reads_awaiting_apply: list[tuple[int, int, Waiter]] | tuple[()] = _NOTHING
        #: Writes of the coordinator itself (conf state, created snapshot) for the next batch.
        self.pending_write: GroupWrite | None = None
        #: A Ready whose commands a worker thread is applying (blocking state machines).
        self.applying: Ready | None = None

    def __repr__(self) -> str:
        return f"Replica(group={self.group_id}, node={self.node_id}, applied={self.applied})"

    # ---------------------------------------------------------------- state

    def start(self, rawnode: RawNode, conf_state: ConfState) -> None:
        """Give a replica made without its raft member (``rawnode=None``) its
        member and the membership it starts with."""
        if self._raft is not self._record or hasattr(self._record, "term"):
            raise AssertionError(f"{self!r} already has its raft member")
        self._raft = rawnode
        self.conf_state = conf_state

    @property
    def rawnode(self) -> RawNode:
        """The group's raft member, rebuilt first if the replica is dormant."""
        rn = self._raft
        if isinstance(rn, RawNode):
            return rn
        reviver = self.reviver
        if reviver is None:  # hibernate() refuses without one
            raise AssertionError(f"{self!r} is dormant without a reviver")
        self._raft = node = reviver(self, rn)
        return node

    @property
    def dormant(self) -> DormantState | None:
        """What the replica keeps of its raft member while dormant, else None."""
        rn = self._raft
        return None if isinstance(rn, RawNode) else rn

    def follows(self, leader: int) -> bool:
        """Whether this replica is a follower of ``leader`` (a dormant one is not rebuilt)."""
        rn = self._raft
        if isinstance(rn, RawNode):
            raft = rn.raft
            return raft.state is _FOLLOWER and raft.lead == leader
        return rn.state is _FOLLOWER and rn.lead == leader

    def hibernate(self, seed: int | None) -> bool:
        """Fold the raft member away if it rebuilds exactly and nothing is pending.

        ``seed`` is the seed of the raft config the member was built on (and will
        be rebuilt on). Any later use of :attr:`rawnode` rebuilds it (the
        reviver's job), so the rest of the coordinator needs not know. Returns
        whether it is dormant now.
        """
        rn = self._raft
        if not isinstance(rn, RawNode):
            return True
        if (
            self.reviver is None
            or self.has_pending_requests
            or self.pending_write is not None
            or self.campaign_waiters
            or rn.has_ready()
        ):
            return False
        log = rn.raft.raft_log
        if log.applied != log.committed:
            # Committed entries are on their way to the state machine.
            return False
        state = dormant_state(rn.raft, seed, self._record)
        if state is None:
            return False
        self._raft = state
        # Empty (nothing pending): the maps of past requests are not kept.
        self.proposal_waiters = self.read_waiters = _NO_WAITERS
        if not self.index_waiters:
            self.index_waiters = _NO_WAITERS
        return True

    def writable_proposal_waiters(self) -> dict[int, Waiter]:
        """:attr:`proposal_waiters`, made this replica's own first if it is the shared one."""
        waiters = self.proposal_waiters
        if waiters is _NO_WAITERS:
            waiters = self.proposal_waiters = {}
        return waiters

    def writable_index_waiters(self) -> dict[int, int]:
        """:attr:`index_waiters`, made this replica's own first if it is the shared one."""
        waiters = self.index_waiters
        if waiters is _NO_WAITERS:
            waiters = self.index_waiters = {}
        return waiters

    def writable_read_waiters(self) -> dict[bytes, Waiter]:
        """:attr:`read_waiters`, made this replica's own first if it is the shared one."""
        waiters = self.read_waiters
        if waiters is _NO_WAITERS:
            waiters = self.read_waiters = {}
        return waiters

    @property
    def has_pending_requests(self) -> bool:
        """Whether any proposal, read or driver request is outstanding."""
        return bool(
            self.ops
            or self.wants_campaign
            or self.proposal_waiters
            or self.read_waiters
            or self.reads_awaiting_apply
            or self.applying is not None
        )

    def campaign(self) -> None:
        """Start an election unless one is pointless or already under way.

        A no-op when this replica leads, campaigns, follows a known leader, voted
        for another candidate in this term, or has a damaged log. Raft refuses to
        campaign over committed entries not yet applied, or before a new group's
        initial snapshot is persisted: the campaign then waits for them (the driver
        calls again once they are applied).
        """
        raft = self.rawnode.raft
        log = raft.raft_log
        if log.applied < log.committed:
            self.wants_campaign = True
            return
        self.wants_campaign = False
        if (
            raft.state is _FOLLOWER
            and raft.lead == NONE
            and raft.vote in (NONE, raft.id)
            and not self.corrupt
        ):
            self.rawnode.campaign()
        waiters = self.campaign_waiters
        if waiters:
            self.campaign_waiters = _NOTHING
            for w in waiters:
                w.set_result(None)

    def add_campaign_waiter(self, waiter: Waiter) -> None:
        """Release ``waiter`` once the next queued campaign request has run."""
        waiters = self.campaign_waiters
        if isinstance(waiters, list):
            waiters.append(waiter)
        else:
            self.campaign_waiters = [waiter]

    def write_for_next_batch(self) -> GroupWrite:
        """The coordinator's own pending write for this group (created on first use)."""
        w = self.pending_write
        if w is None:
            w = self.pending_write = GroupWrite(self.group_id)
        return w

    # -------------------------------------------------- state machine side

    def apply_commands(
        self,
        entries: list[Entry],
        on_conf_change: Callable[[Replica, Entry], bool] | None = None,
    ) -> AppliedBatch:
        """Apply ``entries`` in log order: commands to the state machine, membership
        changes through ``on_conf_change``.

        ``on_conf_change(replica, entry)`` applies one membership change (the driver's job:
        it touches raft) and returns False if that stopped the group; applying then
        stops and ``stopped`` is set. Without it (a worker thread applying for a
        blocking state machine) membership entries only advance the applied index:
        the driver applied them before. Takes a snapshot when the policy says so.
        """
        out = AppliedBatch()
        sm = self.state_machine
        results = out.results
        n = 0
        nbytes = 0
        for e in entries:
            n += 1
            data = e.data
            if e.type is not EntryType.NORMAL:
                if on_conf_change is not None and not on_conf_change(self, e):
                    out.stopped = True
                    return out
                continue
            if not data:
                continue
            if len(data) >= HEADER_SIZE:
                proposer, seq = decode_header(data)
                command = data[HEADER_SIZE:]
            else:
                proposer, seq, command = 0, 0, data
            nbytes += len(command)
            try:
                value: object = sm.apply(e.index, command)
                failed = False
            except Exception as exc:  # the command's own failure is its result
                _log.warning("group %d: apply of index %d raised %r", self.group_id, e.index, exc)
                value, failed = exc, True
            results.append((e.index, proposer, seq, value, failed))
        if entries:
            last = entries[-1]
            self.applied = out.applied = last.index
            out.applied_term = last.term
        self.entries_since_snapshot += n
        self.bytes_since_snapshot += nbytes
        if entries and self.policy.due(self.entries_since_snapshot, self.bytes_since_snapshot):
            out.snapshot_data = sm.snapshot()
            self.entries_since_snapshot = 0
            self.bytes_since_snapshot = 0
        return out

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the state machine's state with an incoming snapshot's."""
        self.state_machine.restore(snapshot.data)
        self.applied = snapshot.metadata.index
        self.entries_since_snapshot = 0
        self.bytes_since_snapshot = 0

    # ------------------------------------------------------------- reads

    def await_apply(self, index: int, seq: int, waiter: Waiter) -> None:
        """Release ``waiter`` once the state machine applied ``index``."""
        if self.applied >= index:
            waiter.set_result(index)
            return
        pending = self.reads_awaiting_apply
        if isinstance(pending, list):
            heappush(pending, (index, seq, waiter))
        else:
            self.reads_awaiting_apply = [(index, seq, waiter)]

    def release_reads(self) -> None:
        """Release the reads whose index the state machine has reached."""
        pending = self.reads_awaiting_apply
        if not isinstance(pending, list):
            return
        applied = self.applied
        while pending and pending[0][0] <= applied:
            index, _, waiter = heappop(pending)
            waiter.set_result(index)
        if not pending:
            self.reads_awaiting_apply = _NOTHING

    def fail_all(self, error: BaseException) -> None:
        """Fail every outstanding request of this replica with ``error``."""
        for w in self.proposal_waiters.values():
            w.set_error(error)
        for w in self.read_waiters.values():
            w.set_error(error)
        for _, _, w in self.reads_awaiting_apply:
            w.set_error(error)
        self.proposal_waiters = self.index_waiters = self.read_waiters = _NO_WAITERS
        self.reads_awaiting_apply = _NOTHING
        # Queued proposals have their waiters in proposal_waiters too.
        self.ops = _NOTHING
        for w in self.campaign_waiters:
            w.set_error(error)
        self.campaign_waiters = _NOTHING
        self.wants_campaign = False
