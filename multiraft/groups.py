"""The replicas a node hosts, and the sets its driver works from.

Each hosted group has one :class:`~multiraft.replica.Replica`. The table keeps
them by id, knows which are ticked (``active``: not quiesced) and which have
work for the next ready cycle (``dirty``), builds new replicas, and keeps the
node's peer liveness in step with the memberships of its groups.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from multiraft.config import NodeConfig
from multiraft.counters import NodeCounters
from multiraft.errors import GroupFailedError
from multiraft.events import EventHub, GroupCreated, GroupFailed, MembershipChanged
from multiraft.fold_schedule import FoldSchedule
from multiraft.group_spec import GroupSpec
from multiraft.heap_trim import HeapTrimmer, malloc_trim
from multiraft.liveness import PeerLiveness
from multiraft.ports import CorruptionReportingLog, GroupStorage, LogEngine
from multiraft.raft.config import Config
from multiraft.raft.dormant import DormantState, dormant_progress
from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.rawnode import RawNode, Status
from multiraft.raft.types import (
    NONE,
    ConfState,
    HardState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)
from multiraft.replica import Replica, SnapshotPolicy
from multiraft.snapshot_sends import GatedStorage, SnapshotSends
from multiraft.state_machine import StateMachine
from multiraft.unknown_groups import UnknownGroups

__all__ = ["GroupTable"]

_log = logging.getLogger("multiraft.node")

_MASK64 = (1 << 64) - 1

#: Replicas :meth:`GroupTable.reserve` makes at a time (~2 MiB that stay).
RESERVE_CHUNK = 4096

#: The membership of a replica made by :meth:`GroupTable.reserve` until it is hosted.
_NO_MEMBERS = ConfState()

#: The term of a new group's initial snapshot (the first election is for term 2).
_INITIAL_TERM = 1

#: Distinct memberships (and small initial snapshots) shared at once between new
#: groups; past it the sharing starts over.
_INITIAL_SHARED = 1024

#: Initial state machine snapshots up to this size are shared by equal new groups
#: (comparing larger ones would cost more than it saves).
_SHARED_SNAPSHOT_DATA = 256


#: Cycles a quiesced replica may wait for its raft member to settle into a form
#: that folds away (its last answer sent, its last commit applied).
_HIBERNATE_ATTEMPTS = 3


def _group_seed(seed: int, group_id: int, node_id: int) -> int:
    # Distinct, well-mixed election randomization per (group, node), reproducible.
    x = (
        (seed * 0x9E3779B97F4A7C15)
        ^ (group_id * 0xBF58476D1CE4E5B9)
        ^ (node_id * 0x94D049BB133111EB)
    )
    return x & _MASK64


def members(cs: ConfState) -> set[int]:
    """Every node in a membership: voters, learners, outgoing and staged."""
    return {*cs.voters, *cs.learners, *cs.voters_outgoing, *cs.learners_next}


class GroupTable:
    """The hosted replicas of one node and the driver's working sets.

    ``active`` and ``dirty`` are insertion-ordered dicts used as sets, so the
    order in which groups are visited (and so the order of messages and of a
    simulated network's random draws) is the same run after run.
    """

    __slots__ = (
        "_corruption",
        "_initial_meta",
        "_initial_snaps",
        "_reserve_from",
        "_reserved",
        "_reviver",
        "_to_reserve",
        "active",
        "config",
        "corrupt",
        "counters",
        "dirty",
        "dormant_replicas",
        "engine",
        "events",
        "failed",
        "folds",
        "heap_trimmer",
        "liveness",
        "node_id",
        "policy",
        "replicas",
        "settling",
        "snapshot_sends",
        "tick",
        "uninitialized",
        "unknown",
    )

    def __init__(
        self,
        config: NodeConfig,
        engine: LogEngine,
        events: EventHub,
        counters: NodeCounters,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.engine = engine
        self.events = events
        self.counters = counters
        self.policy = SnapshotPolicy(
            config.snapshot_entries, config.snapshot_bytes, config.snapshot_keep_entries
        )
        self.replicas: dict[int, Replica] = {}
        #: Groups that are ticked (not quiesced, not failed).
        self.active: dict[Replica, None] = {}
        #: Groups with work for the next ready cycle.
        self.dirty: dict[Replica, None] = {}
        #: Hosted groups stopped by :meth:`fail`, and those with a damaged log.
        self.failed: set[int] = set()
        self.corrupt: set[int] = set()
        #: Hosted groups that do not know their membership yet (created for a message).
        self.uninitialized: set[int] = set()
        self.liveness = PeerLiveness(config.peer_timeout_ticks)
        self.unknown = UnknownGroups(
            config.unknown_group_buffer_groups, config.unknown_group_buffer_messages
        )
        self.snapshot_sends = SnapshotSends(config.max_concurrent_snapshot_sends)
        #: The node's current tick.
        self.tick = 0
        self._corruption = engine if isinstance(engine, CorruptionReportingLog) else None
        #: Initial snapshot metadata of a new group by its sorted members, and
        #: small initial snapshots by members and data.
        self._initial_meta: dict[tuple[int, ...], SnapshotMetadata] = {}
        self._initial_snaps: dict[tuple[tuple[int, ...], bytes], Snapshot] = {}
        #: Quiesced replicas to fold away once their last cycle is done (see
        #: :meth:`hibernate_settled`), with the attempts they have left.
        self.settling: dict[Replica, int] = {}
        #: Quiesced replicas waiting ``dormant_after_ticks`` before they settle
        #: (None: they settle at once).
        self.folds: FoldSchedule[Replica] | None = (
            FoldSchedule(config.dormant_after_ticks) if config.dormant_after_ticks else None
        )
        #: Hosted replicas whose raft member is folded away (see :meth:`hibernate_settled`).
        self.dormant_replicas = 0
        #: Gives the C heap's free pages back after a large wave of folds.
        self.heap_trimmer = HeapTrimmer(malloc_trim())
        # One bound method shared by every replica (not one per replica).
        self._reviver = self._revive
        #: Replicas made ahead of :meth:`host` by :meth:`reserve`, by group id.
        self._reserved: dict[int, Replica] = {}
        #: Specs of which :meth:`reserve` made the replicas up to ``_reserve_from``.
        self._to_reserve: Sequence[GroupSpec] = ()
        self._reserve_from = 0

    # ---------------------------------------------------------------- hosting

    def reserve(self, specs: Sequence[GroupSpec]) -> None:
        """Make, ahead of hosting them with :meth:`host` in this order, what the
        replicas of ``specs`` keep for as long as they are hosted: each one's
        storage and :class:`~multiraft.replica.Replica` (with the record it folds
        into), :data:`RESERVE_CHUNK` groups at a time.

        Why: CPython gives memory back to the system only by whole arenas of
        1 MiB. Made group by group with their raft members, which are freed
        when the groups fold, the objects that stay would be spread over every
        arena of that time and keep them all; made first, they fill arenas of
        their own, and the arenas of the raft members are given back once the
        groups fold. Chunks, so that the garbage collector does not go back and
        forth between a replica and its raft member over the whole heap.
        Replaces what an earlier call reserved and was not hosted.
        """
        self._to_reserve = specs
        self._reserve_from = 0
        self._reserve_chunk()

    def _reserve_chunk(self) -> None:
        specs = self._to_reserve
        start = self._reserve_from
        end = min(start + RESERVE_CHUNK, len(specs))
        engine = self.engine
        node_id = self.node_id
        policy = self.policy
        reserved: dict[int, Replica] = {}
        for i in range(start, end):
            spec = specs[i]
            gid = spec.group_id
            reserved[gid] = Replica(
                gid, node_id, None, engine.storage(gid), spec.state_machine, policy, _NO_MEMBERS, 0
            )
        self._reserved = reserved
        self._reserve_from = end
        if end == len(specs):
            self._to_reserve = ()

    def _take_reserved(self, group_id: int, state_machine: StateMachine) -> Replica | None:
        reserved = self._reserved
        if not reserved:
            if not self._to_reserve:
                return None
            self._reserve_chunk()
            reserved = self._reserved
        r = reserved.pop(group_id, None)
        if not reserved:
            # Give back the table, sized for every reserved replica.
            self._reserved = {}
        return r if r is not None and r.state_machine is state_machine else None

    def host(
        self,
        group_id: int,
        state_machine: StateMachine,
        peers: list[int] | None,
        *,
        lazily: bool,
        restored: bool = False,
    ) -> Replica:
        """Start hosting ``group_id``: recover it from the engine, or start it from an
        initial snapshot of ``state_machine`` with the voters ``peers`` (None: start
        empty and learn log and membership from the leader).

        ``restored`` says the caller already restored the state machine from the
        engine's snapshot.
        """
        node_id = self.node_id
        r = self._take_reserved(group_id, state_machine)
        stored = r.storage if r is not None else self.engine.storage(group_id)
        hs, cs = stored.initial_state()
        existing = stored.last_index() > 0 or not hs.is_empty() or not cs.is_empty()
        applied = 0
        snap = None
        if existing:
            snap = stored.snapshot()
            applied = snap.metadata.index
        rawnode = RawNode(self._raft_config(group_id, stored, applied))
        if not existing and peers:
            # A new group starts from a snapshot holding the whole initial membership
            # (index len(peers), term 1), never from one membership entry per peer:
            # a replica created empty then gets that snapshot from the leader and
            # never sees a part of the membership, in which it might elect itself.
            initial = self._initial_snapshot(peers, state_machine.snapshot())
            rawnode.bootstrap_from_snapshot(initial)
            meta = initial.metadata
            cs = meta.conf_state
            applied = meta.index
        if r is None:
            r = Replica(group_id, node_id, rawnode, stored, state_machine, self.policy, cs, 0)
        else:
            r.start(rawnode, cs)
        r.conf_index = applied
        r.reviver = self._reviver
        if self._corruption is not None and self.is_corrupt(group_id):
            r.corrupt = True
            self.corrupt.add(group_id)
            _log.warning(
                "node %d: group %d has a damaged log: it will not vote or acknowledge"
                " until a snapshot repairs it",
                node_id,
                group_id,
            )
        if snap is not None and applied and not restored:
            r.restore(snap)
        r.applied = applied
        if snap is not None and cs != snap.metadata.conf_state:
            # A membership persisted apart from the snapshot is as of some index
            # this node had applied, so at most the commit index it persisted.
            r.conf_index = max(applied, hs.commit)
        self.replicas[group_id] = r
        self.active[r] = None
        self.dirty[r] = None
        self.learn_peers(cs)
        if cs.is_empty():
            self.uninitialized.add(group_id)
        if self.events.has_subscribers:
            self.events.publish(GroupCreated(group_id, lazily))
        return r

    def _raft_config(self, group_id: int, stored: GroupStorage, applied: int) -> Config:
        cfg = self.config
        return Config(
            id=self.node_id,
            storage=GatedStorage(stored, group_id, self.snapshot_sends),
            election_tick=cfg.election_ticks,
            heartbeat_tick=cfg.heartbeat_ticks,
            applied=applied,
            max_size_per_msg=cfg.max_size_per_msg,
            max_committed_size_per_ready=cfg.max_committed_size_per_ready,
            max_uncommitted_entries_size=cfg.max_uncommitted_entries_size,
            max_inflight_msgs=cfg.max_inflight_msgs,
            max_inflight_bytes=cfg.max_inflight_bytes,
            check_quorum=cfg.check_quorum,
            pre_vote=cfg.pre_vote,
            read_only_option=cfg.read_only_option,
            step_down_on_removal=cfg.step_down_on_removal,
            seed=self._raft_seed(group_id),
        )

    def _raft_seed(self, group_id: int) -> int:
        """The seed of the raft config of ``group_id``'s member here (its folds need it too)."""
        return _group_seed(self.config.seed, group_id, self.node_id)

    def _revive(self, r: Replica, state: DormantState) -> RawNode:
        """Rebuild dormant ``r``'s RawNode; a replica still quiesced may fold again."""
        rn = RawNode.from_dormant(self._raft_config(r.group_id, r.storage, 0), state)
        self.dormant_replicas -= 1
        if r.quiesced:
            self._settle_later(r)
        return rn

    def _settle_later(self, r: Replica) -> None:
        """Fold quiesced ``r`` once it stayed quiesced ``dormant_after_ticks``."""
        folds = self.folds
        if folds is None:
            self.settling[r] = _HIBERNATE_ATTEMPTS
        else:
            folds.schedule(r, self.tick)

    def status(self, r: Replica) -> Status:
        """``r``'s raft ``Status``; a dormant replica answers from its folded state
        (the same status its rebuilt member would report) and stays dormant."""
        state = r.dormant
        if state is None:
            return r.rawnode.status()
        node_id = self.node_id
        progress: dict[int, Progress] = {}
        if state.state is StateType.LEADER:
            cfg = self.config
            window = Inflights.shared_empty(cfg.max_inflight_msgs, cfg.max_inflight_bytes)
            rebuilt = dormant_progress(state, node_id, window)
            progress = {pid: pr.clone() for pid, pr in rebuilt.items()}
        return Status(
            id=node_id,
            hard_state=HardState(term=state.term, vote=state.vote, commit=state.commit),
            soft_state=SoftState(lead=state.lead, raft_state=state.state),
            applied=state.applied,
            progress=progress,
            lead_transferee=NONE,
        )

    def hibernate_settled(self) -> None:
        """Fold away the raft members of the replicas that quiesced since the last call.

        Called by the driver after a ready cycle, when their last messages are
        sent and their last writes done. Replicas settle ``dormant_after_ticks``
        after they quiesced (:mod:`multiraft.fold_schedule`). A replica that does
        not fold yet (an answer still to send, a commit to apply) is tried again
        after the next cycles, a few times; one whose raft is in no form that
        rebuilds exactly stays as it is (see :mod:`multiraft.raft.dormant`).
        """
        settling = self.settling
        folds = self.folds
        if folds is not None:
            for r in folds.take_due(self.tick):
                settling[r] = _HIBERNATE_ATTEMPTS
        if not settling:
            return
        self.settling = {}
        folded = 0
        for r, attempts in settling.items():
            if not r.quiesced or r.removed or r.failed is not None:
                continue
            if r.dormant is not None:
                continue
            if r.hibernate(self._raft_seed(r.group_id)):
                folded += 1
            elif attempts > 1:
                self.settling[r] = attempts - 1
        self.dormant_replicas += folded
        more_to_come = bool(self.settling) or (folds is not None and len(folds) > 0)
        if self.heap_trimmer.wave_ended(folded, more_to_come):
            # A dict keeps the table of its largest size: the many groups that
            # were awake at once left a large one behind.
            self.active = dict.fromkeys(self.active)
            self.heap_trimmer.trim()

    def _initial_snapshot(self, peers: list[int], data: bytes) -> Snapshot:
        """A new group's initial snapshot of ``data``: at index ``len(peers)``, term 1,
        with the membership ``peers``.

        Shared by the groups with the same members (most groups share a few), and
        so is the whole snapshot when the state machines start equal and small.
        """
        key = tuple(sorted(peers))
        meta = self._initial_meta.get(key)
        if meta is None:
            if len(self._initial_meta) >= _INITIAL_SHARED:
                self._initial_meta.clear()
            meta = self._initial_meta[key] = SnapshotMetadata(
                ConfState(voters=key), len(key), _INITIAL_TERM
            )
        if len(data) > _SHARED_SNAPSHOT_DATA:
            return Snapshot(meta, data)
        shared_key = (key, data)
        snap = self._initial_snaps.get(shared_key)
        if snap is None:
            if len(self._initial_snaps) >= _INITIAL_SHARED:
                self._initial_snaps.clear()
            snap = self._initial_snaps[shared_key] = Snapshot(meta, data)
        return snap

    def repaired(self, r: Replica) -> None:
        """``r``'s damaged log was replaced by a snapshot: it may vote and acknowledge."""
        r.corrupt = False
        self.corrupt.discard(r.group_id)

    def is_corrupt(self, group_id: int) -> bool:
        """Whether the log engine flags the group's log as damaged."""
        return self._corruption is not None and group_id in self._corruption.corrupted_groups()

    def forget(self, r: Replica) -> None:
        """Stop hosting ``r`` (removed): it leaves every set and frees its peers."""
        r.removed = True
        if r.dormant is not None:
            self.dormant_replicas -= 1
        del self.replicas[r.group_id]
        self.active.pop(r, None)
        self.dirty.pop(r, None)
        self.uninitialized.discard(r.group_id)
        self.failed.discard(r.group_id)
        self.corrupt.discard(r.group_id)
        self.snapshot_sends.finished(r.group_id)
        self.settling.pop(r, None)
        if self.folds is not None:
            self.folds.cancel(r)
        self.forget_peers(r.conf_state)

    def fail(self, r: Replica, exc: BaseException) -> None:
        """Stop group ``r`` for good: its raft rejected an input as impossible.

        Its raft state can no longer be trusted, so it is never called again: the
        group stops ticking, voting and acknowledging on this node (it stays
        hosted, so requests fail with ``GroupFailedError``). The other groups are
        not affected.
        """
        reason = f"{type(exc).__name__}: {exc}"
        _log.error("node %d: group %d stopped: %s", self.node_id, r.group_id, reason)
        r.failed = reason
        self.failed.add(r.group_id)
        self.active.pop(r, None)
        self.dirty.pop(r, None)
        self.snapshot_sends.finished(r.group_id)
        r.fail_all(GroupFailedError(r.group_id, reason))
        self.counters.groups_failed += 1
        self.events.publish(GroupFailed(r.group_id, reason))

    # ---------------------------------------------------------------- ticking

    def wake(self, r: Replica) -> None:
        """Tick ``r`` again (it was quiesced)."""
        if r.quiesced and not r.removed and r.failed is None:
            r.quiesced = False
            self.active[r] = None
            self.settling.pop(r, None)
            if self.folds is not None:
                self.folds.cancel(r)
            self.counters.wakeups += 1

    def quiesce(self, r: Replica) -> None:
        """Stop ticking ``r`` until a message or request wakes it."""
        if not r.quiesced:
            r.quiesced = True
            self.active.pop(r, None)
            self.counters.quiesce_events += 1
            r.rawnode.raft.trk.share_idle_windows()
            self._settle_later(r)

    # ------------------------------------------------------------- membership

    def set_conf_state(self, r: Replica, cs: ConfState, index: int) -> None:
        """Record ``r``'s membership as of log ``index``.

        Never persisted on its own: after a restart raft rebuilds it from the
        snapshot's membership and the changes logged after it.
        """
        old = r.conf_state
        r.conf_index = index
        if cs == old:
            return
        r.conf_state = cs
        self.forget_peers(old)
        self.learn_peers(cs)
        if not cs.is_empty():
            self.uninitialized.discard(r.group_id)
        self.events.publish(MembershipChanged(r.group_id, cs, index))

    def learn_peers(self, cs: ConfState) -> None:
        """Count one more group shared with every other member of ``cs``."""
        liveness = self.liveness
        tick = self.tick
        node_id = self.node_id
        for peer in cs.voters:
            if peer != node_id:
                liveness.add(peer, tick)
        if cs.learners or cs.voters_outgoing or cs.learners_next:
            for peer in members(cs).difference(cs.voters):
                if peer != node_id:
                    liveness.add(peer, tick)

    def forget_peers(self, cs: ConfState) -> None:
        """Count one group fewer shared with every other member of ``cs``."""
        for peer in members(cs):
            if peer != self.node_id:
                self.liveness.remove(peer)
