"""The raft state machine of one group member: a pure function of its inputs.

``Raft`` never performs I/O, never reads a clock and never awaits: time advances
only through :meth:`Raft.tick`, input arrives only through :meth:`Raft.step`, and
output accumulates in ``msgs``, ``read_states`` and the unstable part of the log,
for :class:`~multiraft.raft.rawnode.RawNode` to hand to the application.

Each role has its own step function (``_step_leader``, ``_step_candidate``,
``_step_follower``); :meth:`Raft.step` handles what is common to all of them:
term comparison and votes.
"""

from __future__ import annotations

import logging

from multiraft.raft.confchange import Changer, restore
from multiraft.raft.config import Config
from multiraft.raft.errors import (
    CompactedError,
    ProposalDroppedError,
    SnapshotTemporarilyUnavailableError,
    UnavailableError,
)
from multiraft.raft.interning import InternTable
from multiraft.raft.log import RaftLog
from multiraft.raft.progress import Progress
from multiraft.raft.quorum import VoteResult
from multiraft.raft.read_only import ReadOnly
from multiraft.raft.tracker import ProgressTracker, TrackerConfig
from multiraft.raft.types import (
    NONE,
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ProgressState,
    ReadOnlyOption,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
    vote_resp_msg_type,
)

__all__ = ["CAMPAIGN_ELECTION", "CAMPAIGN_PRE_ELECTION", "CAMPAIGN_TRANSFER", "Raft"]

#: Kinds of campaign. A transfer campaign carries its kind as the vote context so
#: that voters grant it even while they still believe in a live leader.
CAMPAIGN_PRE_ELECTION = b"CampaignPreElection"
CAMPAIGN_ELECTION = b"CampaignElection"
CAMPAIGN_TRANSFER = b"CampaignTransfer"

_MT = MessageType
_LEADER = StateType.LEADER
_FOLLOWER = StateType.FOLLOWER
_CANDIDATE = StateType.CANDIDATE
_PRE_CANDIDATE = StateType.PRE_CANDIDATE
_REPLICATE = ProgressState.REPLICATE
_PROBE = ProgressState.PROBE
_SNAPSHOT = ProgressState.SNAPSHOT

_VOTE_TYPES = (_MT.VOTE, _MT.PRE_VOTE)
_VOTE_FAMILY = (_MT.VOTE, _MT.VOTE_RESP, _MT.PRE_VOTE, _MT.PRE_VOTE_RESP)
_MASK64 = (1 << 64) - 1
_NO_MESSAGES: tuple[Message, ...] = ()
_NO_READ_STATES: tuple[ReadState, ...] = ()
#: SoftState is immutable and takes one of a few values per node: share them.
_SOFT_STATES: InternTable[tuple[int, StateType], SoftState] = InternTable()


def _splitmix64(state: int) -> tuple[int, int]:
    """One step of splitmix64: a tiny deterministic generator kept as one int per group."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def _payload_size(entries: list[Entry] | tuple[Entry, ...]) -> int:
    return sum(len(e.data) for e in entries)


def _count_conf_changes(entries: list[Entry]) -> int:
    return sum(1 for e in entries if e.type != EntryType.NORMAL)


class Raft:
    """One member of one raft group (etcd's ``raft`` struct), driven by ``step`` and ``tick``."""

    __slots__ = (
        "_rand",
        "check_quorum",
        "disable_proposal_forwarding",
        "election_elapsed",
        "election_timeout",
        "heartbeat_elapsed",
        "heartbeat_timeout",
        "id",
        "is_learner",
        "lead",
        "lead_transferee",
        "logger",
        "max_msg_size",
        "max_uncommitted_size",
        "msgs",
        "pending_conf_index",
        "pending_read_index_messages",
        "pre_vote",
        "raft_log",
        "randomized_election_timeout",
        "read_only",
        "read_states",
        "state",
        "step_down_on_removal",
        "term",
        "trk",
        "uncommitted_size",
        "vote",
    )

    def __init__(self, c: Config) -> None:
        c.validate()
        self.id = c.id
        self.logger: logging.Logger = c.logger
        self.raft_log = RaftLog(c.storage, self.logger, c.effective_max_committed_size_per_ready())
        hs, cs = c.storage.initial_state()
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = _FOLLOWER
        self.is_learner = False
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.effective_max_uncommitted_size()
        self.trk = ProgressTracker(c.max_inflight_msgs, c.max_inflight_bytes)
        # The three outboxes are empty almost all the time in a node hosting many
        # idle groups: they start as the shared empty tuple and become a list on
        # their first item, and whoever takes their items puts the tuple back.
        self.msgs: list[Message] | tuple[Message, ...] = _NO_MESSAGES
        self.read_states: list[ReadState] | tuple[ReadState, ...] = _NO_READ_STATES
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.pending_read_index_messages: list[Message] | tuple[Message, ...] = _NO_MESSAGES
        self.uncommitted_size = 0
        self.read_only = ReadOnly(c.read_only_option)
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.heartbeat_timeout = c.heartbeat_tick
        self.election_timeout = c.election_tick
        self.randomized_election_timeout = c.election_tick
        self.disable_proposal_forwarding = c.disable_proposal_forwarding
        self.step_down_on_removal = c.step_down_on_removal
        self._rand = (c.seed if c.seed is not None else c.id) & _MASK64

        cfg, prs = restore(cs, self._changer())
        got = self.switch_to_config(cfg, prs)
        if got != cs:
            raise AssertionError(f"restored membership {got} differs from stored {cs}")
        if not hs.is_empty():
            self.load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied)
        self.become_follower(self.term, NONE)

    # ------------------------------------------------------------------ helpers

    def _changer(self) -> Changer:
        return Changer(
            self.trk.config,
            self.trk.progress,
            self.raft_log.last_index(),
            self.trk.max_inflight,
            self.trk.max_inflight_bytes,
        )

    @property
    def election_rand_state(self) -> int:
        """The state of the generator that draws election timeouts.

        Kept when the member is folded away (:mod:`multiraft.raft.dormant`), so
        the rebuilt member draws the same timeouts as the original would have.
        """
        return self._rand

    @election_rand_state.setter
    def election_rand_state(self, value: int) -> None:
        self._rand = value & _MASK64

    def has_leader(self) -> bool:
        """True when this member knows a leader for the current term."""
        return self.lead != NONE

    def soft_state(self) -> SoftState:
        """The volatile state reported in Ready (one shared instance per leader and role)."""
        key = (self.lead, self.state)
        s = _SOFT_STATES.get(key)
        if s is None:
            s = _SOFT_STATES.add(key, SoftState(lead=self.lead, raft_state=self.state))
        return s

    def hard_state(self) -> HardState:
        """The state that must be persisted before messages are sent."""
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def read_messages(self) -> list[Message]:
        """Take the outgoing messages (used by tests and by RawNode)."""
        msgs = self.msgs
        if isinstance(msgs, list):
            self.msgs = _NO_MESSAGES
            return msgs
        return []

    def _send(self, m: Message) -> None:
        """Queue ``m``, stamping sender and, for all but votes and proposals, our term."""
        if m.from_ == NONE:
            m.from_ = self.id
        t = m.type
        if t in _VOTE_FAMILY:
            # Vote messages carry the term they are about (a pre-vote the future term),
            # not necessarily ours, so the caller sets it explicitly.
            if m.term == 0:
                raise AssertionError(f"term should be set when sending {t.name}")
        else:
            if m.term != 0:
                raise AssertionError(f"term should not be set when sending {t.name} (was {m.term})")
            # Proposals and read requests forwarded to the leader are local in spirit:
            # they carry no term so that a leader of any term accepts them.
            if t != _MT.PROP and t != _MT.READ_INDEX:
                m.term = self.term
        msgs = self.msgs
        if isinstance(msgs, list):
            msgs.append(m)
        else:
            self.msgs = [m]

    # -------------------------------------------------------------- replication

    def send_append(self, to: int) -> None:
        """Send an append (or a snapshot) to ``to``, even an empty one."""
        self.maybe_send_append(to, True)

    def maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send the entries ``to`` is missing, or a snapshot when they are compacted.

        Returns whether a message was sent. Storage may be compacted between the
        two reads below; whichever read fails, the follower gets a snapshot instead.
        """
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        log = self.raft_log
        prev_index = pr.next - 1
        try:
            prev_term = log.term(prev_index)
            ents = log.entries(pr.next, self.max_msg_size)
        except (CompactedError, UnavailableError):
            return self._maybe_send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        m = Message(
            type=_MT.APP,
            to=to,
            index=prev_index,
            log_term=prev_term,
            entries=tuple(ents),
            commit=log.committed,
        )
        if ents:
            n = len(ents)
            if pr.state == _REPLICATE:
                # The byte window counts payloads only, as etcd does.
                pr.sent_entries(n, _payload_size(ents))
            else:
                pr.sent_entries(n, 0)
        elif pr.state == _PROBE:
            pr.sent_entries(0, 0)
        self._send(m)
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            self.logger.debug("%x: not sending snapshot to inactive %x", self.id, to)
            return False
        try:
            snapshot = self.raft_log.snapshot()
        except SnapshotTemporarilyUnavailableError:
            self.logger.debug(
                "%x failed to send snapshot to %x: temporarily unavailable", self.id, to
            )
            return False
        if snapshot.is_empty():
            raise AssertionError("need a non-empty snapshot to replace compacted entries")
        pr.become_snapshot(snapshot.metadata.index)
        self.logger.debug(
            "%x sent snapshot [index %d, term %d] to %x",
            self.id,
            snapshot.metadata.index,
            snapshot.metadata.term,
            to,
        )
        self._send(Message(type=_MT.SNAP, to=to, snapshot=snapshot))
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        """Send a heartbeat carrying the commit index ``to`` can safely apply."""
        # A follower may not yet have the leader's committed entries; telling it a
        # commit index past its match would make it commit entries it does not have.
        commit = min(self.trk.progress[to].match, self.raft_log.committed)
        self._send(Message(type=_MT.HEARTBEAT, to=to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        """Send appends to every other member."""
        self_id = self.id
        for pid in self.trk.progress:
            if pid != self_id:
                self.maybe_send_append(pid, True)

    def bcast_heartbeat(self) -> None:
        """Heartbeat every other member, carrying the newest pending read context."""
        self._bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    def _bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        self_id = self.id
        for pid in self.trk.progress:
            if pid != self_id:
                self.send_heartbeat(pid, ctx)

    def maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum has matched, if in our term."""
        return self.raft_log.maybe_commit(self.trk.committed(), self.term)

    def reset(self, term: int) -> None:
        """Reset per-term state; a new term clears the vote."""
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        self_id = self.id
        for pid, pr in self.trk.progress.items():
            pr.restart(last + 1, last if pid == self_id else 0)
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only.reset()

    def append_entry(self, entries: list[Entry]) -> bool:
        """Append entries of our term at the end of the log; False if over the size budget."""
        li = self.raft_log.last_index()
        term = self.term
        stamped = [Entry(term, li + 1 + i, e.type, e.data) for i, e in enumerate(entries)]
        if not self._increase_uncommitted_size(stamped):
            self.logger.warning(
                "%x appending new entries would exceed the uncommitted size limit; dropping",
                self.id,
            )
            return False
        li = self.raft_log.append(stamped)
        self.trk.progress[self.id].maybe_update(li)
        self.maybe_commit()
        return True

    # --------------------------------------------------------------------- time

    def tick(self) -> None:
        """Advance logical time by one tick."""
        if self.state == _LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(type=_MT.HUP, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(type=_MT.CHECK_QUORUM, from_=self.id))
            # A transfer that did not finish within an election timeout is abandoned,
            # so the leader accepts proposals again.
            if self.state == _LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
        if self.state != _LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(type=_MT.BEAT, from_=self.id))

    def past_election_timeout(self) -> bool:
        """True once the randomized election timeout has elapsed."""
        return self.election_elapsed >= self.randomized_election_timeout

    def reset_randomized_election_timeout(self) -> None:
        """Pick a new timeout in ``[election_timeout, 2 * election_timeout)``."""
        self._rand, r = _splitmix64(self._rand)
        self.randomized_election_timeout = self.election_timeout + r % self.election_timeout

    # -------------------------------------------------------------------- roles

    def become_follower(self, term: int, lead: int) -> None:
        """Become a follower of ``lead`` (or of nobody) in ``term``."""
        self.reset(term)
        self.lead = lead
        self.state = _FOLLOWER
        self.logger.debug("%x became follower at term %d", self.id, self.term)

    def become_candidate(self) -> None:
        """Start an election: bump the term and vote for ourselves."""
        if self.state == _LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self.reset(self.term + 1)
        self.vote = self.id
        self.state = _CANDIDATE
        self.logger.debug("%x became candidate at term %d", self.id, self.term)

    def become_pre_candidate(self) -> None:
        """Start a pre-election: ask for votes without changing term or vote."""
        if self.state == _LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        self.trk.reset_votes()
        self.lead = NONE
        self.state = _PRE_CANDIDATE
        self.logger.debug("%x became pre-candidate at term %d", self.id, self.term)

    def become_leader(self) -> None:
        """Take leadership and append the empty entry that commits earlier terms."""
        if self.state == _FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self.reset(self.term)
        self.lead = self.id
        self.state = _LEADER
        # The leader's own progress is always replicating: it holds every entry.
        self.trk.progress[self.id].become_replicate()
        # Conf changes in the uncommitted tail may exist; count them as pending
        # until everything up to here is applied.
        self.pending_conf_index = self.raft_log.last_index()
        if not self.append_entry([Entry(0, 0)]):
            raise AssertionError("empty entry was dropped")
        self.logger.debug("%x became leader at term %d", self.id, self.term)

    def hup(self, kind: bytes) -> None:
        """Campaign if allowed: not already leader, promotable, no unapplied conf change."""
        if self.state == _LEADER:
            self.logger.debug("%x ignoring HUP because already leader", self.id)
            return
        if not self.promotable():
            self.logger.warning("%x is unpromotable and can not campaign", self.id)
            return
        log = self.raft_log
        if log.committed > log.applied:
            pending = log.slice(log.applied + 1, log.committed + 1, (1 << 63) - 1)
            if _count_conf_changes(pending):
                self.logger.warning(
                    "%x cannot campaign at term %d: committed conf changes not yet applied",
                    self.id,
                    self.term,
                )
                return
        self.campaign(kind)

    def campaign(self, kind: bytes) -> None:
        """Run a (pre-)election of the given kind."""
        if kind == CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = _MT.PRE_VOTE
            # A pre-vote asks about the term we would use, without moving to it.
            term = self.term + 1
        else:
            self.become_candidate()
            vote_msg = _MT.VOTE
            term = self.term
        if self.poll(self.id, vote_resp_msg_type(vote_msg), True) == VoteResult.WON:
            # A single-voter group wins at once.
            if kind == CAMPAIGN_PRE_ELECTION:
                self.campaign(CAMPAIGN_ELECTION)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if kind == CAMPAIGN_TRANSFER else b""
        last_index = self.raft_log.last_index()
        last_term = self.raft_log.last_term()
        for pid in sorted(self.trk.config.voters.ids()):
            if pid == self.id:
                continue
            self._send(
                Message(
                    type=vote_msg,
                    to=pid,
                    term=term,
                    index=last_index,
                    log_term=last_term,
                    context=ctx,
                )
            )

    def poll(self, node_id: int, t: MessageType, granted: bool) -> VoteResult:
        """Record a vote (first one per voter counts) and return the tally's result."""
        self.trk.record_vote(node_id, granted)
        return self.trk.tally_votes()[2]

    # --------------------------------------------------------------------- step

    def step(self, m: Message) -> None:
        """Process one message; raises ``ProposalDroppedError`` for refused proposals."""
        t = m.type
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if t in _VOTE_TYPES:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # We heard from a leader within the election timeout: a candidate
                    # with a higher term must not disrupt it (CheckQuorum's lease).
                    self.logger.debug(
                        "%x ignored %s from %x at term %d: lease not expired",
                        self.id,
                        t.name,
                        m.from_,
                        self.term,
                    )
                    return
            if t == _MT.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif t == _MT.PRE_VOTE_RESP and not m.reject:
                # A granted pre-vote is for the term we have not reached yet; the
                # election that follows moves us there.
                pass
            elif t in (_MT.APP, _MT.HEARTBEAT, _MT.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and t in (_MT.HEARTBEAT, _MT.APP):
                # A leader cut off by a partition may have a stale term. Answering
                # makes it step down; ignoring it would leave it sending forever
                # while we (with pre-vote or check-quorum) never disrupt it.
                self._send(Message(type=_MT.APP_RESP, to=m.from_))
            elif t == _MT.PRE_VOTE:
                # Reject explicitly so a pre-candidate with an old term learns ours.
                self._send(Message(type=_MT.PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True))
            return

        if t == _MT.HUP:
            self.hup(CAMPAIGN_PRE_ELECTION if self.pre_vote else CAMPAIGN_ELECTION)
        elif t == _MT.VOTE or t == _MT.PRE_VOTE:
            self._handle_vote_request(m)
        elif self.state == _LEADER:
            self._step_leader(m)
        elif self.state == _FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == _MT.PRE_VOTE and m.term > self.term)
        )
        resp_type = vote_resp_msg_type(m.type)
        if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
            # The response carries the request's term: for a pre-vote that is the
            # future term the candidate would use, so it can count the grant.
            self._send(Message(type=resp_type, to=m.from_, term=m.term))
            if m.type == _MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._send(Message(type=resp_type, to=m.from_, term=self.term, reject=True))

    # ----------------------------------------------------------- leader

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == _MT.BEAT:
            self.bcast_heartbeat()
            return
        if t == _MT.CHECK_QUORUM:
            own = self.trk.progress.get(self.id)
            if own is not None:
                own.recent_active = True
            if not self.trk.quorum_active():
                self.logger.warning("%x stepped down to follower: quorum is not active", self.id)
                self.become_follower(self.term, NONE)
            for pid, pr in self.trk.progress.items():
                if pid != self.id:
                    pr.recent_active = False
            return
        if t == _MT.PROP:
            self._leader_propose(m)
            return
        if t == _MT.READ_INDEX:
            self._leader_read_index(m)
            return

        pr_or_none = self.trk.progress.get(m.from_)
        if pr_or_none is None:
            return
        pr = pr_or_none
        if t == _MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif t == _MT.HEARTBEAT_RESP:
            self._handle_heartbeat_response(m, pr)
        elif t == _MT.SNAP_STATUS:
            if pr.state != _SNAPSHOT:
                return
            if m.reject:
                # The snapshot never arrived: forget it so the next attempt sends again.
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for the follower to answer (heartbeat response or append response)
            # before probing: the snapshot may still be being applied.
            pr.msg_app_flow_paused = True
        elif t == _MT.UNREACHABLE:
            # Appends sent optimistically are probably lost; find the match again.
            if pr.state == _REPLICATE:
                pr.become_probe()
        elif t == _MT.TRANSFER_LEADER:
            self._handle_transfer_leader(m, pr)

    def _leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise AssertionError(f"{self.id:x} stepped empty PROP")
        if self.id not in self.trk.progress:
            # We were removed from the group; someone else will lead.
            raise ProposalDroppedError("leader is no longer a member of the group")
        if self.lead_transferee != NONE:
            raise ProposalDroppedError(f"leadership is being transferred to {self.lead_transferee}")
        entries = list(m.entries)
        for i, e in enumerate(entries):
            if e.type == EntryType.NORMAL:
                continue
            cc = (
                ConfChange.from_bytes(e.data).as_v2()
                if e.type == EntryType.CONF_CHANGE
                else ConfChangeV2.from_bytes(e.data)
            )
            already_pending = self.pending_conf_index > self.raft_log.applied
            already_joint = len(self.trk.config.voters.outgoing) > 0
            wants_leave_joint = len(cc.changes) == 0
            refused = ""
            if already_pending:
                refused = "a conf change is already pending (not yet applied)"
            elif already_joint and not wants_leave_joint:
                refused = "must leave the joint configuration first"
            elif not already_joint and wants_leave_joint:
                refused = "not in a joint configuration; refusing the empty conf change"
            if refused:
                # Keep the slot (so indexes handed to the proposer hold) but make it a no-op.
                self.logger.info("%x ignoring conf change %r: %s", self.id, cc, refused)
                entries[i] = Entry(0, 0, EntryType.NORMAL, b"")
            else:
                self.pending_conf_index = self.raft_log.last_index() + i + 1
        if not self.append_entry(entries):
            raise ProposalDroppedError("uncommitted entries size limit reached")
        self.bcast_append()

    def _leader_read_index(self, m: Message) -> None:
        if self.trk.is_singleton():
            resp = self._response_to_read_index_req(m, self.raft_log.committed)
            if resp is not None:
                self._send(resp)
            return
        # Until an entry of our term is committed we do not know the group's
        # commit index; park the request until then.
        if not self._committed_entry_in_current_term():
            parked = self.pending_read_index_messages
            if isinstance(parked, list):
                parked.append(m)
            else:
                self.pending_read_index_messages = [m]
            return
        self._send_read_index_response(m)

    def _committed_entry_in_current_term(self) -> bool:
        log = self.raft_log
        return log.zero_term_on_compacted(log.committed) == self.term

    def _response_to_read_index_req(self, req: Message, read_index: int) -> Message | None:
        if req.from_ == NONE or req.from_ == self.id:
            self._add_read_state(read_index, req.entries[0].data)
            return None
        return Message(
            type=_MT.READ_INDEX_RESP, to=req.from_, index=read_index, entries=req.entries
        )

    def _add_read_state(self, index: int, request_ctx: bytes) -> None:
        rs = ReadState(index=index, request_ctx=request_ctx)
        states = self.read_states
        if isinstance(states, list):
            states.append(rs)
        else:
            self.read_states = [rs]

    def _send_read_index_response(self, m: Message) -> None:
        if self.read_only.option == ReadOnlyOption.SAFE:
            ctx = m.entries[0].data
            self.read_only.add_request(self.raft_log.committed, m)
            self.read_only.recv_ack(self.id, ctx)
            self._bcast_heartbeat_with_ctx(ctx)
        else:
            resp = self._response_to_read_index_req(m, self.raft_log.committed)
            if resp is not None:
                self._send(resp)

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages:
            return
        if not self._committed_entry_in_current_term():
            return
        msgs = self.pending_read_index_messages
        self.pending_read_index_messages = _NO_MESSAGES
        for m in msgs:
            self._send_read_index_response(m)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        # Unlike etcd, answers that cannot belong to anything outstanding in the
        # follower's current state are dropped here, before they move its progress.
        # etcd trusts every answer to be fresh: its transport never duplicates.
        # Ours may (the simulator and MemoryNetwork duplicate, a retrying transport
        # could) and appends may arrive cut short; then an acknowledgement of match
        # moved PROBE to REPLICATE and filled the window, a rejection from that
        # window moved it back with a new probe, and so on without end, every
        # duplicate adding one more such cycle: a message storm.
        pr.recent_active = True
        if m.reject:
            if pr.is_stale_rejection(m.index, m.reject_hint):
                return
            # The follower told us where its log may match (reject_hint, log_term);
            # skip every index whose term cannot match instead of probing one by one.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)[0]
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == _REPLICATE:
                    pr.become_probe()
                self.send_append(m.from_)
            return
        old_paused = pr.is_paused()
        # An answer at the current match still counts for a probed follower when it
        # answers the outstanding (empty) probe: the follower is reachable and holds
        # everything up to there, so it can replicate again. A probe that carried
        # entries is answered past match; an ack of match then is an older answer.
        if not pr.maybe_update(m.index) and not (
            pr.match == m.index and pr.state == _PROBE and pr.probe_answered_by_match()
        ):
            return
        if pr.state == _PROBE:
            pr.become_replicate()
        elif pr.state == _SNAPSHOT and pr.match >= pr.pending_snapshot:
            # The follower caught up past the snapshot (from it or from the log).
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == _REPLICATE:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            self._release_pending_read_index_messages()
            self.bcast_append()
        elif old_paused:
            # The follower was paused and is not any more: it may need what it missed.
            self.send_append(m.from_)
        # Fill the window with whatever is left to send to this follower.
        while self.maybe_send_append(m.from_, False):
            pass
        if m.from_ == self.lead_transferee and pr.match == self.raft_log.last_index():
            self.logger.info("%x sent TIMEOUT_NOW to %x after it caught up", self.id, m.from_)
            self.send_timeout_now(m.from_)

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.msg_app_flow_paused = False
        # A full window with no append response in a whole heartbeat interval is
        # likely stuck on lost messages; free one slot so replication can move.
        if pr.state == _REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        # A follower in PROBE gets an append even when it is caught up (for example
        # after report_unreachable): its answer moves it back to REPLICATE.
        if pr.match < self.raft_log.last_index() or pr.state == _PROBE:
            self.send_append(m.from_)
        if self.read_only.option != ReadOnlyOption.SAFE or not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if self.trk.config.voters.vote_result(acks) != VoteResult.WON:
            return
        for rs in self.read_only.advance(m.context):
            resp = self._response_to_read_index_req(rs.req, rs.index)
            if resp is not None:
                self._send(resp)

    def _handle_transfer_leader(self, m: Message, pr: Progress) -> None:
        if pr.is_learner:
            self.logger.debug("%x ignored transfer to learner %x", self.id, m.from_)
            return
        transferee = m.from_
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return  # the same transfer is already under way
            self.abort_leader_transfer()
        if transferee == self.id:
            return  # already leader
        # The transfer must finish within one election timeout.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self.send_timeout_now(transferee)
        else:
            self.send_append(transferee)

    def send_timeout_now(self, to: int) -> None:
        """Tell ``to`` to campaign at once (the last step of a leadership transfer)."""
        self._send(Message(type=_MT.TIMEOUT_NOW, to=to))

    def abort_leader_transfer(self) -> None:
        """Give up a leadership transfer in progress."""
        self.lead_transferee = NONE

    # -------------------------------------------------------- candidate

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = _MT.PRE_VOTE_RESP if self.state == _PRE_CANDIDATE else _MT.VOTE_RESP
        if t == _MT.PROP:
            raise ProposalDroppedError("no leader: election in progress")
        if t == _MT.APP:
            self.become_follower(m.term, m.from_)
            self._handle_append_entries(m)
        elif t == _MT.HEARTBEAT:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif t == _MT.SNAP:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif t == my_resp:
            res = self.poll(m.from_, t, not m.reject)
            if res == VoteResult.WON:
                if self.state == _PRE_CANDIDATE:
                    self.campaign(CAMPAIGN_ELECTION)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif res == VoteResult.LOST:
                # A rejected pre-vote (or vote) returns us to follower in our own term.
                self.become_follower(self.term, NONE)

    # --------------------------------------------------------- follower

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == _MT.PROP:
            if self.lead == NONE:
                raise ProposalDroppedError("no leader")
            if self.disable_proposal_forwarding:
                raise ProposalDroppedError("proposal forwarding is disabled")
            m.to = self.lead
            self._send(m)
        elif t == _MT.APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append_entries(m)
        elif t == _MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif t == _MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif t == _MT.TRANSFER_LEADER:
            if self.lead == NONE:
                self.logger.info("%x no leader; dropping leader transfer", self.id)
                return
            m.to = self.lead
            self._send(m)
        elif t == _MT.TIMEOUT_NOW:
            self.logger.info("%x got TIMEOUT_NOW from %x; campaigning", self.id, m.from_)
            # The leader asked for this election: skip pre-vote and any lease.
            self.hup(CAMPAIGN_TRANSFER)
        elif t == _MT.READ_INDEX:
            if self.lead == NONE:
                self.logger.info("%x no leader; dropping read index", self.id)
                return
            m.to = self.lead
            self._send(m)
        elif t == _MT.READ_INDEX_RESP:
            if len(m.entries) != 1:
                self.logger.error("%x invalid READ_INDEX_RESP from %x", self.id, m.from_)
                return
            self._add_read_state(m.index, m.entries[0].data)

    def _handle_append_entries(self, m: Message) -> None:
        log = self.raft_log
        if m.index < log.committed:
            # Everything up to our commit index already matches the leader; saying so
            # (instead of rejecting) spares the leader a useless probe round.
            self._send(Message(type=_MT.APP_RESP, to=m.from_, index=log.committed))
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(type=_MT.APP_RESP, to=m.from_, index=last_new))
            return
        # Reject with a hint: the largest index at or below the probe whose term is
        # at most the probe's term. The leader can skip straight past the conflict.
        hint_index = min(m.index, log.last_index())
        hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
        self._send(
            Message(
                type=_MT.APP_RESP,
                to=m.from_,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        log = self.raft_log
        if m.commit > log.last_index():
            # A leader only sends min(match, committed), which we hold. Anything else
            # is a broken or hostile peer: answer, but do not commit what we lack.
            self.logger.error(
                "%x ignoring heartbeat commit %d past last index %d from %x",
                self.id,
                m.commit,
                log.last_index(),
                m.from_,
            )
        else:
            log.commit_to(m.commit)
        self._send(Message(type=_MT.HEARTBEAT_RESP, to=m.from_, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is None:
            self.logger.error("%x got SNAP without a snapshot from %x", self.id, m.from_)
            return
        if self.restore(snap):
            self._send(Message(type=_MT.APP_RESP, to=m.from_, index=self.raft_log.last_index()))
        else:
            self._send(Message(type=_MT.APP_RESP, to=m.from_, index=self.raft_log.committed))

    # ---------------------------------------------------- state changes

    def restore(self, s: Snapshot) -> bool:
        """Reset the log and membership to snapshot ``s``; False if it is not needed."""
        md = s.metadata
        if md.index <= self.raft_log.committed:
            return False
        if self.state != _FOLLOWER:
            # Only a follower may take a snapshot; anything else is a bug elsewhere.
            # Stepping down with a bumped term keeps us safe until the next election.
            self.logger.warning("%x attempted to restore snapshot as %s", self.id, self.state.name)
            self.become_follower(self.term + 1, NONE)
            return False
        cs = md.conf_state
        if not (self.id in cs.voters or self.id in cs.learners or self.id in cs.voters_outgoing):
            self.logger.warning(
                "%x attempted to restore a snapshot that does not include it: %r", self.id, cs
            )
            return False
        if self.raft_log.match_term(md.index, md.term):
            # We already have the snapshot's entries: fast-forward the commit only.
            self.raft_log.commit_to(md.index)
            return False
        self.raft_log.restore(s)
        self.trk = ProgressTracker(self.trk.max_inflight, self.trk.max_inflight_bytes)
        cfg, prs = restore(cs, self._changer())
        got = self.switch_to_config(cfg, prs)
        if got != cs:
            raise AssertionError(f"restored membership {got} differs from snapshot {cs}")
        own = self.trk.progress[self.id]
        own.maybe_update(own.next - 1)
        return True

    def promotable(self) -> bool:
        """Whether this member may become leader: a voter with no pending snapshot."""
        pr = self.trk.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.raft_log.has_pending_snapshot()

    def apply_conf_change(self, cc: ConfChangeV2) -> ConfState:
        """Apply a committed membership change and return the new membership."""
        changer = self._changer()
        if cc.leave_joint():
            cfg, prs = changer.leave_joint()
        else:
            joint, auto_leave = cc.enter_joint()
            if joint:
                cfg, prs = changer.enter_joint(auto_leave, cc.changes)
            else:
                cfg, prs = changer.simple(cc.changes)
        return self.switch_to_config(cfg, prs)

    def switch_to_config(self, cfg: TrackerConfig, prs: dict[int, Progress]) -> ConfState:
        """Install a membership and act on it (commit what a smaller quorum allows)."""
        self.trk.config = cfg
        self.trk.progress = prs
        cs = self.trk.conf_state()
        pr = prs.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == _LEADER:
            # A removed or demoted leader keeps serving until the next term unless the
            # host asked it to step down at once.
            if self.step_down_on_removal:
                self.become_follower(self.term, NONE)
            return cs
        if self.state != _LEADER or not cs.voters:
            return cs
        # Removing a node can shrink the quorum: entries it was holding back commit now.
        if self.maybe_commit():
            self.bcast_append()
        else:
            for pid in self.trk.progress:
                if pid != self.id:
                    self.maybe_send_append(pid, False)
        if self.lead_transferee != NONE and self.lead_transferee not in cfg.voters.ids():
            self.abort_leader_transfer()
        return cs

    def load_state(self, hs: HardState) -> None:
        """Install a persisted hard state at start-up."""
        log = self.raft_log
        if hs.commit < log.committed or hs.commit > log.last_index():
            raise AssertionError(
                f"{self.id:x} state.commit {hs.commit} is out of range "
                f"[{log.committed}, {log.last_index()}]"
            )
        log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def forget_leader(self) -> None:
        """Forget the current leader (followers only), so pre-votes can be granted at once.

        For hosts with an external failure detector: when a quorum of followers
        forget a dead leader they can elect a new one without waiting out the
        election timeout. Hearing from the leader again restores it.
        """
        if self.state != _FOLLOWER or self.lead == NONE:
            return
        self.lead = NONE

    def _increase_uncommitted_size(self, entries: list[Entry]) -> bool:
        s = _payload_size(entries)
        # The first proposal is always accepted, however large, so a single big entry
        # cannot wedge the group.
        if (
            self.uncommitted_size > 0
            and s > 0
            and self.uncommitted_size + s > self.max_uncommitted_size
        ):
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, entries: list[Entry]) -> None:
        """Release the budget of entries that were committed."""
        if self.uncommitted_size == 0:
            return
        s = _payload_size(entries)
        self.uncommitted_size = 0 if s > self.uncommitted_size else self.uncommitted_size - s

    def advance_applied(self, applied: int) -> None:
        """Record that entries up to ``applied`` were applied; leave a joint config if due."""
        self.raft_log.applied_to(applied)
        if (
            self.trk.config.auto_leave
            and applied >= self.pending_conf_index
            and self.state == _LEADER
        ):
            # The joint configuration we entered is applied: propose leaving it, like
            # any proposal (appended and broadcast at once). Its empty change cannot
            # hit the size budget; a transfer in progress can refuse it, and then the
            # next applied index tries again.
            leave = Entry(0, 0, EntryType.CONF_CHANGE_V2, ConfChangeV2().to_bytes())
            try:
                self.step(Message(type=_MT.PROP, from_=self.id, entries=(leave,)))
            except ProposalDroppedError as exc:
                self.logger.debug("%x not leaving the joint configuration yet: %s", self.id, exc)
                return
            self.logger.info(
                "%x initiating automatic transition out of joint configuration", self.id
            )
