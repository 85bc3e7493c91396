"""RawNode: the application's handle on one raft member (etcd's ``RawNode``).

The application drives it: feed it ticks, proposals and messages; whenever
``has_ready()``, take a :class:`Ready`, persist its ``entries``, ``hard_state`` and
``snapshot``, then send its ``messages``, apply its ``committed_entries``, and
call ``advance(ready)`` before asking for the next one.
"""

from __future__ import annotations

import functools

import attrs

from multiraft.raft.confchange import Changer, restore
from multiraft.raft.config import Config
from multiraft.raft.dormant import DormantState, revive
from multiraft.raft.errors import StepLocalMsgError, StepPeerNotFoundError
from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.quorum import JointConfig, MajorityConfig
from multiraft.raft.raft import Raft
from multiraft.raft.tracker import TrackerConfig
from multiraft.raft.types import (
    EMPTY_HARD_STATE,
    NONE,
    ConfChange,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotStatus,
    SoftState,
    StateType,
    is_local_msg,
    is_response_msg,
    shared_hard_state,
)

__all__ = ["RawNode", "Ready", "Status"]

_PROP = MessageType.PROP
_NORMAL = EntryType.NORMAL


@attrs.define(slots=True)
class Ready:
    """Everything a RawNode needs the application to do, in one batch.

    ``soft_state`` and ``hard_state`` are None when unchanged since the last Ready.
    ``must_sync`` says whether ``entries``/``hard_state`` need a durable write
    (new entries, a new term or a new vote) or only a buffered one (commit).
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    read_states: list[ReadState] = attrs.field(factory=list)
    entries: list[Entry] = attrs.field(factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = attrs.field(factory=list)
    messages: list[Message] = attrs.field(factory=list)
    must_sync: bool = False

    def applied_cursor(self) -> int:
        """The index the application will have applied once it handled this Ready."""
        if self.committed_entries:
            return self.committed_entries[-1].index
        if self.snapshot is not None and not self.snapshot.is_empty():
            return self.snapshot.metadata.index
        return 0


@attrs.define(slots=True)
class Status:
    """A snapshot of a member's state (``progress`` is filled on the leader only)."""

    id: int
    hard_state: HardState
    soft_state: SoftState
    applied: int
    progress: dict[int, Progress]
    lead_transferee: int


@functools.lru_cache(maxsize=1024)
def _add_node_bytes(node_id: int) -> bytes:
    # Every replica of every group bootstraps the same few peers: encode each once.
    return ConfChange(ConfChangeType.ADD_NODE, node_id).to_bytes()


def _must_sync(st: HardState, prev: HardState, entries: int) -> bool:
    # Term and vote guard election safety and new entries guard the log; a
    # commit-only change can be recovered from the leader, so it needs no fsync.
    return entries != 0 or st.vote != prev.vote or st.term != prev.term


class RawNode:
    """A thread-unsafe, I/O-free raft member driven by the application."""

    __slots__ = ("_prev_hard_state", "_prev_soft_state", "raft")

    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        self._prev_soft_state = self.raft.soft_state()
        self._prev_hard_state = shared_hard_state(self.raft.hard_state())

    @classmethod
    def from_dormant(cls, config: Config, state: DormantState) -> RawNode:
        """The RawNode whose raft member was folded into ``state`` (see
        :mod:`multiraft.raft.dormant`), with nothing to hand out: folding one
        requires that its last Ready was handled."""
        rn = cls.__new__(cls)
        rn.raft = revive(config, state)
        rn._prev_soft_state = rn.raft.soft_state()
        rn._prev_hard_state = shared_hard_state(rn.raft.hard_state())
        return rn

    # ----------------------------------------------------------------- inputs

    def bootstrap(self, peers: list[int]) -> None:
        """Initialize a brand-new group: append and commit one ADD_NODE per peer.

        Raises ``ValueError`` for an empty peer list or a storage that is not empty.
        """
        if not peers:
            raise ValueError("peers: bootstrap needs at least one peer")
        if len(set(peers)) != len(peers):
            raise ValueError(f"peers: duplicate ids in {peers!r}")
        r = self.raft
        if r.raft_log.storage.last_index() != 0:
            raise ValueError("can't bootstrap a nonempty storage")
        # The entries are handed to the application through the first Ready like
        # any other; the hard state compares against the empty one.
        self._prev_hard_state = EMPTY_HARD_STATE
        r.become_follower(1, NONE)
        ents = [
            Entry(1, i + 1, EntryType.CONF_CHANGE, _add_node_bytes(pid))
            for i, pid in enumerate(peers)
        ]
        r.raft_log.append(ents)
        # The entries are committed (every member bootstraps the same ones) but not
        # applied: the application applies them, and the adds are idempotent.
        r.raft_log.committed = len(ents)
        trk = r.trk
        if trk.progress or trk.config.voters.ids():
            # Not the usual empty start: apply the changes one by one, validated.
            for pid in peers:
                r.apply_conf_change(ConfChange(ConfChangeType.ADD_NODE, pid).as_v2())
            return
        self._install_voters(peers)

    def bootstrap_from_snapshot(self, snapshot: Snapshot) -> None:
        """Initialize a brand-new group from ``snapshot`` instead of membership entries.

        The log starts right after the snapshot, which is committed, at the
        snapshot's term, and the membership is the snapshot's from the start: no
        member ever runs with part of it, as one replaying :meth:`bootstrap`'s
        entries one by one would. The snapshot is handed to the application in
        the first Ready, to be persisted like one received from a leader (the
        application's state machine holds its state already). Raises
        ``ValueError`` for an empty snapshot, a membership without voters, or a
        storage that is not empty.
        """
        meta = snapshot.metadata
        cs = meta.conf_state
        if snapshot.is_empty() or meta.term == 0:
            raise ValueError("snapshot: bootstrap needs a snapshot with an index and a term")
        if not cs.voters:
            raise ValueError(f"snapshot: bootstrap needs at least one voter, got {cs!r}")
        r = self.raft
        log = r.raft_log
        if log.storage.last_index() != 0 or log.last_index() != 0:
            raise ValueError("can't bootstrap a nonempty storage")
        self._prev_hard_state = EMPTY_HARD_STATE
        r.become_follower(meta.term, NONE)
        log.unstable.restore(snapshot)
        log.committed = meta.index
        trk = r.trk
        simple = not (cs.learners or cs.voters_outgoing or cs.learners_next)
        if simple and not trk.progress and not trk.config.voters.ids():
            self._install_voters(list(cs.voters))
        else:
            changer = Changer(
                trk.config, trk.progress, log.last_index(), trk.max_inflight, trk.max_inflight_bytes
            )
            cfg, prs = restore(cs, changer)
            r.switch_to_config(cfg, prs)

    def _install_voters(self, peers: list[int]) -> None:
        """Switch an empty configuration to the voters ``peers`` at once.

        Adding them one by one (one simple change each) ends in this
        configuration; building it directly costs one switch instead of one
        validated copy of the tracker per peer.
        """
        r = self.raft
        trk = r.trk
        config = TrackerConfig(JointConfig(MajorityConfig(peers)))
        last = max(r.raft_log.last_index(), 1)
        progress = {
            pid: Progress(
                last,
                Inflights.shared_empty(trk.max_inflight, trk.max_inflight_bytes),
                recent_active=True,
            )
            for pid in peers
        }
        r.switch_to_config(config, progress)

    def tick(self) -> None:
        """Advance logical time by one tick."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now. On a leader it does nothing: no term change, no messages."""
        self.raft.step(Message(type=MessageType.HUP))

    def propose(self, data: bytes) -> None:
        """Propose a command; raises ``ProposalDroppedError`` if it cannot be accepted."""
        self.raft.step(
            Message(type=_PROP, from_=self.raft.id, entries=(Entry(0, 0, _NORMAL, data),))
        )

    def propose_batch(self, commands: list[bytes]) -> None:
        """Propose several commands as one message: one append, one broadcast.

        All or none are accepted; raises ``ProposalDroppedError`` like ``propose``.
        Hosts that gather many proposals per cycle should use this.
        """
        if not commands:
            return
        # Positional arguments and a list display: a third cheaper per command
        # than keywords in a generator, on the proposal path of every command.
        entries = tuple([Entry(0, 0, _NORMAL, c) for c in commands])
        self.raft.step(Message(type=_PROP, from_=self.raft.id, entries=entries))

    def propose_conf_change(self, cc: ConfChange | ConfChangeV2) -> None:
        """Propose a membership change (applied with ``apply_conf_change`` once committed)."""
        etype = EntryType.CONF_CHANGE if isinstance(cc, ConfChange) else EntryType.CONF_CHANGE_V2
        self.raft.step(
            Message(
                type=MessageType.PROP,
                from_=self.raft.id,
                entries=(Entry(0, 0, etype, cc.to_bytes()),),
            )
        )

    def step(self, m: Message) -> None:
        """Feed a message received from a peer.

        Raises ``StepLocalMsgError`` for a local-only message type and
        ``StepPeerNotFoundError`` for a response from an unknown peer.
        """
        if is_local_msg(m.type):
            raise StepLocalMsgError(f"{m.type.name} is a local message; it cannot come from a peer")
        if m.from_ in self.raft.trk.progress or not is_response_msg(m.type):
            self.raft.step(m)
            return
        raise StepPeerNotFoundError(f"{m.type.name} from unknown peer {m.from_}")

    def apply_conf_change(self, cc: ConfChange | ConfChangeV2) -> ConfState:
        """Apply a committed membership change; returns the new membership."""
        return self.raft.apply_conf_change(cc.as_v2())

    def report_unreachable(self, node_id: int) -> None:
        """Tell the leader that the last message to ``node_id`` may not have arrived."""
        self.raft.step(Message(type=MessageType.UNREACHABLE, from_=node_id))

    def report_snapshot(self, node_id: int, status: SnapshotStatus) -> None:
        """Report whether the snapshot sent to ``node_id`` was delivered."""
        self.raft.step(
            Message(
                type=MessageType.SNAP_STATUS,
                from_=node_id,
                reject=status == SnapshotStatus.FAILURE,
            )
        )

    def transfer_leader(self, transferee: int) -> None:
        """Ask the leader to hand leadership to ``transferee``."""
        self.raft.step(Message(type=MessageType.TRANSFER_LEADER, from_=transferee))

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read; the answer arrives as a ReadState with ``ctx``."""
        self.raft.step(Message(type=MessageType.READ_INDEX, entries=(Entry(0, 0, data=ctx),)))

    def forget_leader(self) -> None:
        """Make a follower forget its leader so it grants pre-votes at once.

        For hosts with their own failure detector (for example a dead peer node).
        """
        self.raft.forget_leader()

    # ---------------------------------------------------------------- outputs

    def has_ready(self) -> bool:
        """True when ``ready()`` would return something to do."""
        r = self.raft
        log = r.raft_log
        if r.msgs or log.unstable.entries or r.read_states:
            return True
        # Nothing committed past applied means nothing to apply (skips a storage read).
        if log.committed > log.applied and log.has_next_committed_ents():
            return True
        if log.unstable.snapshot is not None:
            return True
        prev_soft = self._prev_soft_state
        if r.lead != prev_soft.lead or r.state != prev_soft.raft_state:
            return True
        current = (r.term, r.vote, log.committed)
        if current == (0, 0, 0):
            return False
        prev_hard = self._prev_hard_state
        return current != (prev_hard.term, prev_hard.vote, prev_hard.commit)

    def ready(self) -> Ready:
        """Collect what the application must persist, send and apply."""
        r = self.raft
        log = r.raft_log
        msgs = r.msgs
        rd = Ready(
            entries=log.unstable_entries(),
            committed_entries=log.next_committed_ents() if log.committed > log.applied else [],
            messages=msgs if isinstance(msgs, list) else [],
        )
        r.msgs = ()
        prev_soft = self._prev_soft_state
        if r.lead != prev_soft.lead or r.state != prev_soft.raft_state:
            rd.soft_state = r.soft_state()
            self._prev_soft_state = rd.soft_state
        prev_hard = self._prev_hard_state
        if (r.term, r.vote, log.committed) != (prev_hard.term, prev_hard.vote, prev_hard.commit):
            hs = rd.hard_state = r.hard_state()
        else:
            hs = prev_hard
        if log.unstable.snapshot is not None:
            rd.snapshot = log.unstable.snapshot
        read_states = r.read_states
        if isinstance(read_states, list):
            rd.read_states = read_states
            r.read_states = ()
        rd.must_sync = _must_sync(hs, prev_hard, len(rd.entries))
        return rd

    def advance(self, rd: Ready) -> None:
        """Acknowledge that ``rd`` was persisted, sent and applied."""
        r = self.raft
        if rd.hard_state is not None:
            self._prev_hard_state = shared_hard_state(rd.hard_state)
        r.reduce_uncommitted_size(rd.committed_entries)
        applied = rd.applied_cursor()
        if applied > 0:
            r.advance_applied(applied)
        if rd.entries:
            last = rd.entries[-1]
            r.raft_log.stable_to(last.index, last.term)
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            r.raft_log.stable_snap_to(rd.snapshot.metadata.index)

    def status(self) -> Status:
        """The member's current state; ``progress`` (copies) only on the leader."""
        r = self.raft
        progress: dict[int, Progress] = {}
        if r.state == StateType.LEADER:
            progress = {pid: pr.clone() for pid, pr in r.trk.progress.items()}
        return Status(
            id=r.id,
            hard_state=r.hard_state(),
            soft_state=r.soft_state(),
            applied=r.raft_log.applied,
            progress=progress,
            lead_transferee=r.lead_transferee,
        )
