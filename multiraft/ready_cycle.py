"""One ready cycle over the groups with work: persist once, send once per peer, apply.

The cycle visits only the dirty groups. It takes a ``Ready`` from each, puts
every group's entries, hard state and snapshot (and the node's own writes: a
membership, a snapshot it took) into one write batch for the log engine (one
durable sync for all of them), then routes all messages into one frame per
destination node (heartbeats as coalesced records), sends them, and finally
applies what each group committed and advances it.

One exception to "persist, then send", the leader's disk write in parallel
with its followers' (section 10.2.1 of the Raft thesis): the appends of a
group that was already leader before this ``Ready`` leave before the write, in
one frame per destination, when nothing they carry depends on the write. They
carry entries of the leader's current term, whose term and vote were persisted
before it could win the election, and a commit index no higher than the last
entry persisted in an earlier cycle. A follower may then hold entries its
leader loses in a crash, which raft allows (they were not committed). No
entry can commit on the strength of the leader's unpersisted copy: a quorum
needs a follower's acknowledgement of it, and the driver steps acknowledgements
only after this cycle's write has returned (a group with a single voter commits
at once, so its commit index covers its new entries and they wait for the write).

Two more ways the cycle keeps ``fdatasync`` off a commit's path, as etcd does:

* A batch in which no ``Ready`` must sync (only commit indexes moved: no
  entries, term and vote unchanged, no snapshot, none of the node's own writes)
  is written without a sync (``WriteBatch.sync``). A crash may lose those commit
  moves; the leader tells the restarted node its commit index again. A batch
  whose Ready hands out a membership change to apply syncs all the same, so
  the commit index covering the change is durable before it takes effect: a
  restarted node rebuilds its membership from the log up to its persisted
  commit index, and raft refuses to campaign only while it knows of committed
  changes not yet applied, so one that forgot an applied change could campaign
  and count votes under the configuration before it.
* Committed commands whose entries were persisted on this node in an earlier
  cycle are applied, and their results delivered, before this cycle's write
  (they are committed, hence durable on a quorum, and durable here). Entries
  this cycle persists, membership changes and everything after them, snapshots
  and blocking state machines wait for the write as before; ``advance`` always
  follows the write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from multiraft.applying import Applier
from multiraft.commits_during_write import CommitsDuringWrite
from multiraft.events import LeaderChanged
from multiraft.frames import Frame, GroupMessage
from multiraft.groups import GroupTable
from multiraft.log_writer import LogWriter
from multiraft.outbound import FrameSender
from multiraft.ports import GroupWrite, WriteBatch
from multiraft.proposals import decode_header
from multiraft.raft.errors import ProposalDroppedError
from multiraft.raft.rawnode import Ready
from multiraft.raft.types import EntryType, Message, MessageType, SoftState, StateType
from multiraft.replica import Replica

__all__ = ["ReadyCycle"]

_APP = MessageType.APP
_NORMAL = EntryType.NORMAL
_LEADER = StateType.LEADER
_HEARTBEAT = MessageType.HEARTBEAT
_CAMPAIGN_REQUESTS = frozenset((MessageType.VOTE, MessageType.PRE_VOTE))
_ACKNOWLEDGEMENTS = frozenset(
    (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP, MessageType.APP_RESP)
)

_log = logging.getLogger("multiraft.node")


class ReadyCycle:
    """Runs ready cycles for one node."""

    __slots__ = ("_applier", "_during_write", "_notify_leader", "_sender", "_table", "_writer")

    def __init__(
        self,
        table: GroupTable,
        writer: LogWriter,
        sender: FrameSender,
        applier: Applier,
        notify_leader: Callable[[], None],
        during_write: CommitsDuringWrite | None = None,
    ) -> None:
        """``during_write``: steps acknowledgements while a write runs in a thread."""
        self._table = table
        self._writer = writer
        self._sender = sender
        self._applier = applier
        self._notify_leader = notify_leader
        self._during_write = during_write

    async def run(self) -> None:
        """One cycle over the dirty groups (or just flush frames queued by ticks)."""
        table = self._table
        dirty = table.dirty
        sender = self._sender
        if not dirty:
            if sender.outbox.frames:
                sender.flush()
            return
        table.dirty = {}
        batch: list[GroupWrite] = []
        work: list[tuple[Replica, Ready]] = []
        early: dict[int, Frame] | None = None
        # Groups whose committed entries start at or below their last persisted index.
        persisted: list[tuple[Replica, Ready, int]] | None = None
        # The node's own writes (membership, snapshots, compaction) always sync.
        sync = False
        for r in dirty:
            if r.removed or r.failed is not None or r.applying is not None:
                continue
            gw = r.pending_write
            r.pending_write = None
            if gw is not None:
                sync = True
            rn = r.rawnode
            if rn.has_ready():
                if r.corrupt:
                    got = _ready_of_damaged(r)
                    if got is None:
                        if gw is not None:
                            batch.append(gw)
                        continue
                    rd = got
                else:
                    rd = rn.ready()
                    if gw is None and rd.messages and _appends_may_leave_first(r, rd):
                        if early is None:
                            early = {}
                        rd.messages = _route_appends(r.group_id, rd.messages, early, sender)
                    if rd.committed_entries and rd.snapshot is None and not r.blocking:
                        # Everything below this Ready's new entries was persisted before.
                        ents = rd.entries
                        last = ents[0].index - 1 if ents else rn.raft.raft_log.last_index()
                        if rd.committed_entries[0].index <= last:
                            if persisted is None:
                                persisted = []
                            persisted.append((r, rd, last))
                if not sync and (
                    rd.must_sync or rd.snapshot is not None or _commits_conf_change(rd)
                ):
                    sync = True
                if rd.entries or rd.hard_state is not None or rd.snapshot is not None:
                    if gw is None:
                        gw = GroupWrite(r.group_id)
                    elif rd.snapshot is not None:
                        # The incoming snapshot's membership is newer than ours.
                        gw.conf_state = None
                    gw.entries = rd.entries
                    gw.hard_state = rd.hard_state
                    gw.snapshot = rd.snapshot
                work.append((r, rd))
            if gw is not None:
                batch.append(gw)
        if not work and not batch:
            if sender.outbox.frames:
                sender.flush()
            return
        table.counters.ready_cycles += 1
        if early:
            for to in sorted(early):
                sender.send(to, early[to])
        applied_before: dict[Replica, int] | None = None
        if persisted is not None:
            applied_before = {}
            apply_persisted = self._applier.apply_persisted
            for r, rd, last in persisted:
                applied_before[r] = apply_persisted(r, rd, last)
        if batch:
            during = self._during_write
            if during is None or not self._writer.in_thread:
                await self._writer.write(WriteBatch(batch, sync))
            else:
                await during.write(self._writer, WriteBatch(batch, sync), work, applied_before)
        outbox = sender.outbox
        for r, rd in work:
            if r.removed or r.failed is not None:
                continue
            if rd.soft_state is not None:
                self._on_soft_state(r, rd.soft_state)
            msgs = rd.messages
            if msgs:
                if r.corrupt:
                    msgs = _withheld_by_damaged_log(r, msgs)
                if len(msgs) > 1:
                    msgs = _without_redundant_heartbeats(msgs)
                gid = r.group_id
                quiesced = r.quiesced
                for m in msgs:
                    outbox.add(gid, m, quiesced)
            for rs in rd.read_states:
                waiter = r.read_waiters.pop(rs.request_ctx, None)
                if waiter is not None:
                    r.await_apply(rs.index, decode_header(rs.request_ctx)[1], waiter)
        sender.flush()
        apply = self._applier.apply
        for r, rd in work:
            if r.removed or r.failed is not None:
                continue
            apply(r, rd, 0 if applied_before is None else applied_before.get(r, 0))

    def _on_soft_state(self, r: Replica, ss: SoftState) -> None:
        lead = ss.lead
        if lead != r.leader:
            r.leader = lead
            if lead:
                r.last_leader = lead
            if r.read_waiters:
                # Raft forgets the read requests a leader had not answered when it
                # steps down, and a follower's forwarded ones may be lost with it:
                # fail them now (the caller retries) rather than at the deadline.
                _drop_reads(r)
            table = self._table
            if table.events.has_subscribers:
                table.events.publish(LeaderChanged(r.group_id, lead or None, r.rawnode.raft.term))
            self._notify_leader()


def _commits_conf_change(rd: Ready) -> bool:
    """Whether ``rd`` hands out a membership change to apply (its commit must be durable)."""
    return any(e.type is not _NORMAL for e in rd.committed_entries)


def _appends_may_leave_first(r: Replica, rd: Ready) -> bool:
    """Whether ``r``'s appends in ``rd`` may be sent before ``rd`` is persisted.

    Only for a group that led before this ``Ready`` and still does (no role
    change, so no new term or vote waits in it), that receives no snapshot, and
    whose commit index covers only entries persisted in earlier cycles.
    """
    if rd.soft_state is not None or rd.snapshot is not None:
        return False
    raft = r.rawnode.raft
    if raft.state is not _LEADER:
        return False
    entries = rd.entries
    return not entries or entries[0].index > raft.raft_log.committed


def _route_appends(
    group_id: int, msgs: list[Message], early: dict[int, Frame], sender: FrameSender
) -> list[Message]:
    """Put the appends of ``msgs`` in the ``early`` frames; the other messages, in order."""
    if len(msgs) > 1:
        msgs = _without_redundant_heartbeats(msgs)
    rest: list[Message] = []
    outbox = sender.outbox
    for m in msgs:
        if m.type is _APP:
            frame = early.get(m.to)
            if frame is None:
                frame = early[m.to] = Frame(outbox.node_id, m.to)
            frame.messages.append(GroupMessage(group_id, m))
            outbox.note_append(group_id, m.to)
        else:
            rest.append(m)
    return rest


def _ready_of_damaged(r: Replica) -> Ready | None:
    """The Ready of a group with a damaged log, or None while raft cannot read it."""
    try:
        return r.rawnode.ready()
    except Exception as exc:
        # Raft needs committed entries the engine can no longer read: the group
        # stays silent until a snapshot from the leader replaces them.
        _log.warning("group %d: damaged log unreadable: %r", r.group_id, exc)
        return None


def _withheld_by_damaged_log(r: Replica, msgs: list[Message]) -> list[Message]:
    """``msgs`` less the ones a replica with a damaged log must not send.

    No vote or pre-vote requests, no granted votes or pre-votes and no append
    acknowledgements: its log may lack what it claims to hold. Rejections and
    heartbeat responses still go, so the leader keeps probing it and, once it
    compacted past what the replica has, sends the snapshot that repairs it.
    """
    kept = []
    for m in msgs:
        t = m.type
        if t in _CAMPAIGN_REQUESTS:
            continue
        if t in _ACKNOWLEDGEMENTS and not m.reject:
            continue
        kept.append(m)
    if len(kept) != len(msgs):
        _log.debug(
            "group %d: withheld %d messages (damaged log)", r.group_id, len(msgs) - len(kept)
        )
    return kept


def _drop_reads(r: Replica) -> None:
    error = ProposalDroppedError(
        f"group {r.group_id}: read dropped, the leader changed before it was confirmed"
    )
    for waiter in r.read_waiters.values():
        waiter.set_error(error)
    r.read_waiters.clear()


def _without_redundant_heartbeats(msgs: list[Message]) -> list[Message]:
    """``msgs`` less the plain heartbeats to followers that get an append as well.

    An append tells a follower all a heartbeat would (leader, term, a commit
    index at least as high) and its answer tells the leader all a heartbeat
    response would, so the heartbeat and its response are pure overhead; raft
    treats the dropped heartbeat like any lost message. Heartbeats carrying a
    read request's context are kept: their acknowledgements confirm the read.
    """
    appended: set[int] | None = None
    for m in msgs:
        if m.type is _APP:
            if appended is None:
                appended = set()
            appended.add(m.to)
    if appended is None:
        return msgs
    return [m for m in msgs if m.type is not _HEARTBEAT or m.context or m.to not in appended]
