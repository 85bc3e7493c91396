"""The per-node coordinator: hosts many raft groups over one transport and one log engine.

One driver task owns every ``RawNode``. Each turn it ticks (when a tick is due)
the groups that are not quiesced, steps the frames that arrived, runs the
requests callers queued, and then runs one ready cycle over the groups with work:
one log engine write for all of them, one frame per destination node (raft
heartbeats coalesced into records), then applying committed entries and
advancing. Callers (``propose``, ``read``...) never touch a ``RawNode``: they
queue a request on the replica and wait for its outcome.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from os import PathLike
from typing import Any

import attrs
import trio

from multiraft.config import NodeConfig, UnknownGroupPolicy
from multiraft.errors import (
    GroupExistsError,
    GroupNotFoundError,
    GroupRemovedError,
    NodeClosedError,
    NotLeaderError,
    ProposalTimeoutError,
)
from multiraft.events import (
    EventHub,
    EventSubscription,
    GroupCreated,
    GroupRemoved,
    LeaderChanged,
    MembershipChanged,
)
from multiraft.frames import Frame, HeartbeatRecord, SnapshotOutcome
from multiraft.heartbeats import Outbox, heartbeat_message, heartbeat_response_message
from multiraft.liveness import PeerLiveness
from multiraft.ports import GroupWrite, LogEngine, Transport, WriteBatch
from multiraft.proposals import Waiter, decode_header, encode_header
from multiraft.quiescence import follower_may_quiesce, leader_may_quiesce
from multiraft.raft.config import Config
from multiraft.raft.errors import (
    ProposalDroppedError,
    RaftError,
)
from multiraft.raft.rawnode import RawNode, Ready
from multiraft.raft.types import (
    NONE,
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
    SoftState,
    StateType,
    is_response_msg,
)
from multiraft.replica import AppliedBatch, Replica, SnapshotPolicy
from multiraft.state_machine import StateMachine
from multiraft.unknown_groups import UnknownGroups

__all__ = ["Node", "open_node"]

_log = logging.getLogger("multiraft.node")

_LEADER = StateType.LEADER
_FOLLOWER = StateType.FOLLOWER
_NORMAL = EntryType.NORMAL
_SNAP = MessageType.SNAP
_MASK64 = (1 << 64) - 1
#: Ticks a designated survivor waits after judging a leader's node dead before it
#: campaigns, so that the other survivors have judged it dead too and grant votes.
_CAMPAIGN_DELAY_TICKS = 2


def _group_seed(seed: int, group_id: int, node_id: int) -> int:
    # Distinct, well-mixed election randomization per (group, node), reproducible.
    x = (
        (seed * 0x9E3779B97F4A7C15)
        ^ (group_id * 0xBF58476D1CE4E5B9)
        ^ (node_id * 0x94D049BB133111EB)
    )
    return x & _MASK64


@attrs.define(slots=True)
class _Counters:
    ticks: int = 0
    groups_ticked: int = 0
    ready_cycles: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    heartbeats_coalesced: int = 0
    storage_syncs: int = 0
    send_failures: int = 0
    proposals: int = 0
    commands_applied: int = 0
    snapshots_taken: int = 0
    snapshots_restored: int = 0
    quiesce_events: int = 0
    wakeups: int = 0
    peers_judged_dead: int = 0
    unknown_group_messages: int = 0
    unknown_groups_created: int = 0
    tombstoned_messages: int = 0
    dropped_messages: int = 0


class Node:
    """A node hosting raft groups; obtain one with :func:`open_node`.

    Every method must be called from the trio run that opened the node.
    """

    def __init__(
        self,
        config: NodeConfig,
        transport: Transport,
        engine: LogEngine,
        *,
        write_in_thread: bool,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self._transport = transport
        self._engine = engine
        self._write_in_thread = write_in_thread
        self._write_lock = trio.Lock()
        self._policy = SnapshotPolicy(
            config.snapshot_entries, config.snapshot_bytes, config.snapshot_keep_entries
        )
        self._groups: dict[int, Replica] = {}
        # Insertion-ordered dicts used as sets: iteration order (and so the order of
        # messages and of the network's random draws) is reproducible run to run.
        #: Groups that are ticked (not quiesced).
        self._active: dict[Replica, None] = {}
        #: Groups with work for the next ready cycle.
        self._dirty: dict[Replica, None] = {}
        #: Groups with queued requests, in arrival order.
        self._requested: list[Replica] = []
        self._inbound: list[Frame | SnapshotOutcome] = []
        self._failed_sends: list[tuple[int, Frame]] = []
        self._campaigns: list[tuple[int, Replica]] = []
        self._uninitialized: set[int] = set()
        self._outbox = Outbox(self.node_id)
        self._liveness = PeerLiveness(config.peer_timeout_ticks)
        self._unknown = UnknownGroups(
            config.unknown_group_buffer_groups, config.unknown_group_buffer_messages
        )
        self._events = EventHub(config.event_buffer)
        self._wakeup = trio.Event()
        self._leader_changed = trio.Event()
        self._apply_limiter = trio.CapacityLimiter(4)
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._seq = 0
        self._tick = 0
        self._counters = _Counters()

    # ================================================================ public API

    async def create_group(
        self,
        group_id: int,
        replicas: Iterable[int],
        *,
        state_machine: StateMachine,
        campaign: bool = False,
        join: bool = False,
    ) -> None:
        """Host a replica of ``group_id`` whose members are the nodes ``replicas``.

        Every initial member creates the group with the same ``replicas``. A node
        added later by ``change_membership`` creates it with ``join=True``: it
        starts empty and learns log and membership from the leader (``replicas``
        is then not used). A group with state in the log engine (after a restart)
        is recovered: its state machine is restored from the latest snapshot and
        ``replicas`` is ignored. ``campaign=True`` starts an election at once (see
        :meth:`campaign`). Raises ``GroupExistsError`` if hosted,
        ``GroupRemovedError`` if tombstoned, ``ValueError`` for an invalid id or
        replica list.
        """
        self._check_open()
        _check_group_id(group_id)
        peers = None if join else _check_replicas(self.node_id, replicas)
        if group_id in self._unknown.tombstones:
            raise GroupRemovedError(group_id)
        if group_id in self._groups:
            raise GroupExistsError(group_id)
        restored = False
        if getattr(state_machine, "blocking", False):
            # Restore a recovered group's state off the event loop before hosting it.
            snap = self._engine.storage(group_id).snapshot()
            if not snap.is_empty():
                await trio.to_thread.run_sync(state_machine.restore, snap.data)
                restored = True
            if group_id in self._groups:
                raise GroupExistsError(group_id)
        r = self._host(group_id, state_machine, peers, lazily=False, restored=restored)
        for m in self._unknown.take(group_id):
            self._step(r, m)
        self._signal()
        if campaign:
            await self.campaign(group_id)
        else:
            await trio.lowlevel.checkpoint()

    async def campaign(self, group_id: int) -> None:
        """Start an election for ``group_id`` on this node now.

        A no-op (never an error) when this replica leads, already runs an election,
        follows a known leader or has voted for another candidate in this term.
        """
        r = self._replica(group_id)
        done = Waiter()

        def run(r: Replica) -> None:
            raft = r.rawnode.raft
            log = raft.raft_log
            if log.applied < log.committed:
                # Raft refuses to campaign over committed but unapplied conf changes
                # (a new group's bootstrap entries): retry after this ready cycle.
                self._request(r, run)
                return
            if raft.state is _FOLLOWER and raft.lead == NONE and raft.vote in (NONE, raft.id):
                r.rawnode.campaign()
            done.set_result(None)

        self._request(r, run)
        await done.wait()

    async def propose(self, group_id: int, command: bytes) -> object:
        """Replicate ``command``; return the state machine's result once applied here.

        On a follower the proposal is forwarded to the leader. Raises
        ``GroupNotFoundError``/``GroupRemovedError``, ``NotLeaderError`` when no
        leader is known within ``proposal_timeout``, ``ProposalDroppedError`` when
        raft refuses it or another leader's entry replaced it, and
        ``ProposalTimeoutError`` when it is not applied within the deadline. An
        exception raised by the state machine's ``apply`` is raised here.
        """
        if not isinstance(command, bytes):
            raise TypeError(f"command must be bytes, got {type(command).__name__}")
        self._counters.proposals += 1
        node_id = self.node_id

        def submitter(seq: int) -> Callable[[RawNode], None]:
            data = encode_header(node_id, seq) + command
            return lambda rn: rn.propose(data)

        return await self._replicate(group_id, submitter, "proposal")

    async def read(self, group_id: int) -> int:
        """Linearizable read barrier: return once this replica applied a read index.

        After it returns, reading the local state machine observes every write
        acknowledged before the call. Returns the read index. Errors as
        :meth:`propose`.
        """
        r = self._replica(group_id)
        deadline = trio.current_time() + self.config.proposal_timeout
        await self._await_leader(r, deadline)
        seq = self._next_seq()
        ctx = encode_header(self.node_id, seq)
        waiter = Waiter()
        r.read_waiters[ctx] = waiter

        def run(r: Replica) -> None:
            r.rawnode.read_index(ctx)

        self._request(r, run)
        index = await self._outcome(
            r, waiter, deadline, lambda: r.read_waiters.pop(ctx, None), what="read"
        )
        assert isinstance(index, int)
        return index

    async def change_membership(
        self, group_id: int, change: ConfChange | ConfChangeV2
    ) -> ConfState:
        """Propose a membership change; return the membership once applied here.

        The change's ``context`` reaches other replicas prefixed with a 16-byte
        proposal header. Errors as :meth:`propose`.
        """
        if not isinstance(change, ConfChange | ConfChangeV2):
            raise TypeError("change must be a ConfChange or ConfChangeV2")
        node_id = self.node_id

        def submitter(seq: int) -> Callable[[RawNode], None]:
            cc = attrs.evolve(change, context=encode_header(node_id, seq) + change.context)
            return lambda rn: rn.propose_conf_change(cc)

        result = await self._replicate(group_id, submitter, "membership change")
        assert isinstance(result, ConfState)
        return result

    async def transfer_leadership(self, group_id: int, to_node: int) -> None:
        """Ask the group's leader to hand leadership to ``to_node``; wait until it has.

        Raises ``ValueError`` if ``to_node`` is not a voter, ``ProposalTimeoutError``
        if the transfer did not complete within ``proposal_timeout``.
        """
        r = self._replica(group_id)
        if to_node not in r.conf_state.voters:
            raise ValueError(f"to_node {to_node} is not a voter of group {group_id}")
        deadline = trio.current_time() + self.config.proposal_timeout

        def run(r: Replica) -> None:
            r.rawnode.transfer_leader(to_node)

        self._request(r, run)
        while r.leader != to_node:
            self._check_live(r)
            with trio.move_on_at(deadline):
                await self._leader_changed.wait()
                continue
            raise ProposalTimeoutError(group_id, r.leader or None, "leadership transfer")

    async def remove_group(self, group_id: int) -> None:
        """Stop hosting ``group_id``, drop its log and leave a tombstone.

        Outstanding requests fail with ``GroupRemovedError``; later messages for
        the group are dropped and it cannot be created again on this node.
        """
        r = self._replica(group_id)
        r.removed = True
        del self._groups[group_id]
        self._active.pop(r, None)
        self._dirty.pop(r, None)
        self._uninitialized.discard(group_id)
        self._unknown.tombstones.add(group_id)
        self._forget_peers(r.conf_state)
        r.fail_all(GroupRemovedError(group_id))
        self._notify_leader_waiters()
        async with self._write_lock:
            if self._write_in_thread:
                await trio.to_thread.run_sync(self._engine.remove_group, group_id)
            else:
                self._engine.remove_group(group_id)
        self._events.publish(GroupRemoved(group_id))

    def leader_of(self, group_id: int) -> int | None:
        """The leader this replica knows of, or None."""
        return self._replica(group_id).leader or None

    def group_ids(self) -> list[int]:
        """The hosted groups, ascending."""
        return sorted(self._groups)

    def events(self) -> EventSubscription:
        """Subscribe to events published from now on (bounded buffer, oldest dropped)."""
        return self._events.subscribe()

    def stats(self) -> dict[str, int]:
        """Counters (monotonic) and gauges (``groups``, ``quiesced_groups``, ...)."""
        out = attrs.asdict(self._counters)
        out["groups"] = len(self._groups)
        out["quiesced_groups"] = len(self._groups) - len(self._active)
        out["active_groups"] = len(self._active)
        out["dead_peers"] = len(self._liveness.dead)
        out["unknown_groups_buffered"] = len(self._unknown)
        out["unknown_messages_buffered"] = self._unknown.buffered_messages
        out["unknown_messages_dropped"] = self._unknown.dropped
        out["tombstones"] = len(self._unknown.tombstones)
        return out

    def is_quiesced(self, group_id: int) -> bool:
        """Whether the group is quiesced on this node."""
        return self._replica(group_id).quiesced

    def status(self, group_id: int) -> Any:
        """The raft ``Status`` of this replica."""
        return self._replica(group_id).rawnode.status()

    def applied_index(self, group_id: int) -> int:
        """The index the group's state machine has applied on this node."""
        return self._replica(group_id).applied

    # ============================================================ request plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise NodeClosedError("the node is closed")

    def _replica(self, group_id: int) -> Replica:
        self._check_open()
        r = self._groups.get(group_id)
        if r is None:
            if group_id in self._unknown.tombstones:
                raise GroupRemovedError(group_id)
            raise GroupNotFoundError(group_id)
        return r

    def _check_live(self, r: Replica) -> None:
        self._check_open()
        if r.removed:
            raise GroupRemovedError(r.group_id)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _signal(self) -> None:
        self._wakeup.set()

    def _request(self, r: Replica, run: Callable[[Replica], None]) -> None:
        if not r.ops:
            self._requested.append(r)
        r.ops.append(run)
        self._signal()

    async def _replicate(
        self, group_id: int, submitter: Callable[[int], Callable[[RawNode], None]], what: str
    ) -> object:
        """Submit a log entry made by ``submitter(seq)``; wait for its outcome here."""
        r = self._replica(group_id)
        deadline = trio.current_time() + self.config.proposal_timeout
        await self._await_leader(r, deadline)
        seq = self._next_seq()
        waiter = Waiter()
        r.proposal_waiters[seq] = waiter
        submit = submitter(seq)

        def run(r: Replica) -> None:
            try:
                submit(r.rawnode)
            except ProposalDroppedError as exc:
                r.proposal_waiters.pop(seq, None)
                waiter.set_error(exc)
                return
            self._track_index(r, seq)

        self._request(r, run)
        return await self._outcome(
            r, waiter, deadline, lambda: r.proposal_waiters.pop(seq, None), what
        )

    def _track_index(self, r: Replica, seq: int) -> None:
        raft = r.rawnode.raft
        if raft.state is _LEADER:
            r.index_waiters[raft.raft_log.last_index()] = seq

    def _notify_leader_waiters(self) -> None:
        self._leader_changed.set()
        self._leader_changed = trio.Event()

    async def _await_leader(self, r: Replica, deadline: float) -> None:
        while r.leader == NONE:
            self._check_live(r)
            with trio.move_on_at(deadline):
                await self._leader_changed.wait()
                continue
            raise NotLeaderError(r.group_id, r.last_leader or None)
        self._check_live(r)

    async def _outcome(
        self,
        r: Replica,
        waiter: Waiter,
        deadline: float,
        forget: Callable[[], object],
        what: str = "proposal",
    ) -> object:
        try:
            with trio.move_on_at(deadline):
                return await waiter.wait()
        finally:
            if not waiter.done:
                forget()
        raise ProposalTimeoutError(r.group_id, r.leader or r.last_leader or None, what)

    # ================================================================ hosting

    def _host(
        self,
        group_id: int,
        state_machine: StateMachine,
        peers: list[int] | None,
        *,
        lazily: bool,
        restored: bool = False,
    ) -> Replica:
        cfg = self.config
        storage = self._engine.storage(group_id)
        hs, cs = storage.initial_state()
        existing = storage.last_index() > 0 or not hs.is_empty() or not cs.is_empty()
        snap = storage.snapshot()
        applied = snap.metadata.index if existing else 0
        rawnode = RawNode(
            Config(
                id=self.node_id,
                storage=storage,
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
                seed=_group_seed(cfg.seed, group_id, self.node_id),
            )
        )
        if not existing and peers:
            rawnode.bootstrap(peers)
            cs = ConfState(voters=tuple(peers))
        r = Replica(group_id, self.node_id, rawnode, storage, state_machine, self._policy, cs, 0)
        if applied and not restored:
            r.restore(snap)
        r.applied = applied
        self._groups[group_id] = r
        self._active[r] = None
        self._dirty[r] = None
        self._learn_peers(cs)
        if cs.is_empty():
            self._uninitialized.add(group_id)
        self._events.publish(GroupCreated(group_id, lazily))
        return r

    def _learn_peers(self, cs: ConfState) -> None:
        for peer in _members(cs):
            if peer != self.node_id:
                self._liveness.add(peer, self._tick)

    def _forget_peers(self, cs: ConfState) -> None:
        for peer in _members(cs):
            if peer != self.node_id:
                self._liveness.remove(peer)

    def _wake(self, r: Replica) -> None:
        if r.quiesced and not r.removed:
            r.quiesced = False
            self._active[r] = None
            self._counters.wakeups += 1

    def _quiesce(self, r: Replica) -> None:
        if not r.quiesced:
            r.quiesced = True
            self._active.pop(r, None)
            self._counters.quiesce_events += 1

    # ================================================================ driver

    async def _run_driver(self) -> None:
        interval = self.config.tick_interval
        next_tick = trio.current_time() + interval
        while True:
            if self._has_work():
                await trio.lowlevel.checkpoint()
            else:
                with trio.move_on_at(next_tick):
                    await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = trio.current_time()
            ticked = now >= next_tick
            if ticked:
                self._on_tick()
                next_tick += interval
                if next_tick <= now:
                    # Fell behind (a long pause): skip the missed ticks, do not burst.
                    next_tick = now + interval
            self._process_failed_sends()
            self._process_inbound()
            self._process_requests()
            await self._ready_cycle()
            if ticked:
                self._send_keepalives()

    def _has_work(self) -> bool:
        return bool(
            self._dirty
            or self._inbound
            or self._requested
            or self._failed_sends
            or self._outbox.frames
        )

    def _on_tick(self) -> None:
        c = self._counters
        c.ticks += 1
        self._tick = tick = c.ticks
        for peer in self._liveness.newly_dead(tick):
            self._on_peer_dead(peer)
        if self._campaigns:
            self._run_due_campaigns(tick)
        quiesce = self.config.quiesce
        dead = self._liveness.dead
        dirty = self._dirty
        to_quiesce: list[Replica] = []
        n = 0
        for r in self._active:
            rn = r.rawnode
            if quiesce and rn.raft.state is _LEADER and leader_may_quiesce(r, dead):
                to_quiesce.append(r)
                continue
            rn.tick()
            n += 1
            if rn.has_ready():
                dirty[r] = None
        c.groups_ticked += n
        for r in to_quiesce:
            self._quiesce_as_leader(r)

    def _quiesce_as_leader(self, r: Replica) -> None:
        raft = r.rawnode.raft
        commit = raft.raft_log.committed
        for pid in raft.trk.progress:
            if pid != self.node_id:
                self._outbox.add_quiesce(r.group_id, self.node_id, pid, raft.term, commit)
        self._quiesce(r)

    def _on_peer_dead(self, peer: int) -> None:
        """Groups following a leader on ``peer`` forget it; one survivor campaigns soon."""
        self._counters.peers_judged_dead += 1
        _log.info("node %d: peer %d judged dead", self.node_id, peer)
        dead = self._liveness.dead
        for r in self._groups.values():
            raft = r.rawnode.raft
            if raft.state is not _FOLLOWER or raft.lead != peer:
                continue
            self._wake(r)
            r.rawnode.forget_leader()
            self._dirty[r] = None
            live = [v for v in r.conf_state.voters if v not in dead]
            if live and min(live) == self.node_id:
                self._campaigns.append((self._tick + _CAMPAIGN_DELAY_TICKS, r))

    def _run_due_campaigns(self, tick: int) -> None:
        due = [r for t, r in self._campaigns if t <= tick]
        self._campaigns = [(t, r) for t, r in self._campaigns if t > tick]
        for r in due:
            raft = r.rawnode.raft
            if not r.removed and raft.state is _FOLLOWER and raft.lead == NONE:
                r.rawnode.campaign()
                self._dirty[r] = None

    def _send_keepalives(self) -> None:
        for peer in self._liveness.take_idle_links():
            self._send(peer, Frame(self.node_id, peer), keepalive=True)

    # ------------------------------------------------------------- inbound

    def _process_inbound(self) -> None:
        if not self._inbound:
            return
        inbound = self._inbound
        self._inbound = []
        c = self._counters
        for item in inbound:
            if isinstance(item, SnapshotOutcome):
                self._on_snapshot_outcome(item)
                continue
            c.frames_received += 1
            self._liveness.heard(item.from_node, self._tick)
            c.messages_received += item.message_count()
            for rec in item.heartbeats:
                self._on_heartbeat(rec)
            for rec in item.heartbeat_responses:
                self._on_heartbeat_response(rec)
            groups = self._groups
            for gm in item.messages:
                r = groups.get(gm.group_id)
                if r is None:
                    self._on_unknown_group(gm.group_id, gm.message)
                else:
                    self._step(r, gm.message)

    def _on_snapshot_outcome(self, outcome: SnapshotOutcome) -> None:
        r = self._groups.get(outcome.group_id)
        if r is not None:
            r.rawnode.report_snapshot(outcome.to_node, outcome.status)
            self._wake(r)
            self._dirty[r] = None

    def _on_heartbeat(self, rec: HeartbeatRecord) -> None:
        r = self._groups.get(rec.group_id)
        if r is None:
            self._on_unknown_group(rec.group_id, heartbeat_message(rec))
            return
        if rec.to != self.node_id:
            self._counters.dropped_messages += 1
            return
        self._step_raw(r, heartbeat_message(rec))
        if rec.quiesce and follower_may_quiesce(r, rec):
            self._quiesce(r)
        else:
            self._wake(r)

    def _on_heartbeat_response(self, rec: HeartbeatRecord) -> None:
        r = self._groups.get(rec.group_id)
        if r is None:
            self._on_unknown_group(rec.group_id, heartbeat_response_message(rec))
            return
        if rec.quiesce and r.quiesced:
            # The follower confirms a quiesce we asked for: nothing to do, stay asleep.
            return
        self._step(r, heartbeat_response_message(rec))

    def _step(self, r: Replica, m: Message) -> None:
        if m.to != self.node_id:
            self._counters.dropped_messages += 1
            return
        self._step_raw(r, m)
        self._wake(r)

    def _step_raw(self, r: Replica, m: Message) -> None:
        try:
            r.rawnode.step(m)
        except RaftError as exc:
            # A forwarded proposal without a leader, a response from a removed peer:
            # dropping it is what raft expects; the sender retries or times out.
            self._counters.dropped_messages += 1
            _log.debug("group %d: dropped %s from %d: %s", r.group_id, m.type.name, m.from_, exc)
            return
        self._dirty[r] = None

    def _on_unknown_group(self, group_id: int, m: Message) -> None:
        c = self._counters
        c.unknown_group_messages += 1
        if group_id in self._unknown.tombstones:
            c.tombstoned_messages += 1
            return
        policy = self.config.unknown_group_policy
        if policy is UnknownGroupPolicy.BUFFER:
            self._unknown.hold(group_id, m)
            return
        if (
            policy is UnknownGroupPolicy.CREATE
            and not is_response_msg(m.type)
            and m.to == self.node_id
            and len(self._uninitialized) < self.config.unknown_group_create_limit
        ):
            factory = self.config.state_machine_factory
            assert factory is not None  # NodeConfig validation guarantees it
            r = self._host(group_id, factory(group_id), None, lazily=True)
            c.unknown_groups_created += 1
            self._step(r, m)
            return
        c.dropped_messages += 1

    # ------------------------------------------------------------ requests

    def _process_failed_sends(self) -> None:
        if not self._failed_sends:
            return
        failed = self._failed_sends
        self._failed_sends = []
        for to, frame in failed:
            reported: set[int] = set()
            for gm in frame.messages:
                r = self._groups.get(gm.group_id)
                if r is None:
                    continue
                if gm.message.type is _SNAP:
                    r.rawnode.report_snapshot(to, SnapshotStatus.FAILURE)
                if gm.group_id not in reported:
                    reported.add(gm.group_id)
                    r.rawnode.report_unreachable(to)
                self._dirty[r] = None

    def _process_requests(self) -> None:
        if not self._requested:
            return
        requested = self._requested
        self._requested = []
        for r in requested:
            ops = r.ops
            r.ops = []
            if r.removed:
                continue
            self._wake(r)
            for run in ops:
                run(r)
            self._dirty[r] = None

    # ------------------------------------------------------------ ready cycle

    async def _ready_cycle(self) -> None:
        dirty = self._dirty
        outbox = self._outbox
        if not dirty:
            if outbox.frames:
                self._send_frames(outbox.take())
            return
        self._dirty = {}
        batch: list[GroupWrite] = []
        work: list[tuple[Replica, Ready]] = []
        for r in dirty:
            if r.removed or r.applying is not None:
                continue
            gw = r.pending_write
            r.pending_write = None
            rn = r.rawnode
            if rn.has_ready():
                rd = rn.ready()
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
            if outbox.frames:
                self._send_frames(outbox.take())
            return
        self._counters.ready_cycles += 1
        if batch:
            await self._persist(WriteBatch(batch))
        for r, rd in work:
            if r.removed:
                continue
            if rd.soft_state is not None:
                self._on_soft_state(r, rd.soft_state)
            gid = r.group_id
            quiesced = r.quiesced
            for m in rd.messages:
                outbox.add(gid, m, quiesced)
            for rs in rd.read_states:
                waiter = r.read_waiters.pop(rs.request_ctx, None)
                if waiter is not None:
                    r.await_apply(rs.index, decode_header(rs.request_ctx)[1], waiter)
        self._send_frames(outbox.take())
        for r, rd in work:
            if r.removed:
                continue
            if r.blocking and (rd.committed_entries or rd.snapshot is not None):
                self._apply_in_thread(r, rd)
                continue
            if rd.snapshot is not None:
                self._restored(r, rd.snapshot)
            ents = rd.committed_entries
            if ents:
                self._apply_conf_changes(r, ents)
                self._deliver(r, r.apply_commands(ents), ents)
            r.rawnode.advance(rd)
            if r.pending_write is not None or r.rawnode.has_ready():
                self._dirty[r] = None

    async def _persist(self, batch: WriteBatch) -> None:
        async with self._write_lock:
            if self._write_in_thread:
                await trio.to_thread.run_sync(self._engine.write, batch)
            else:
                self._engine.write(batch)
        self._counters.storage_syncs += 1

    def _send_frames(self, frames: dict[int, Frame]) -> None:
        self._counters.heartbeats_coalesced += self._outbox.heartbeats_coalesced
        self._outbox.heartbeats_coalesced = 0
        for to in sorted(frames):
            self._send(to, frames[to])

    def _send(self, to: int, frame: Frame, keepalive: bool = False) -> None:
        c = self._counters
        c.frames_sent += 1
        c.messages_sent += frame.message_count()
        if not keepalive:
            # A keepalive covers the interval before it, not the one after.
            self._liveness.sent(to)
        if not self._transport.send(to, frame):
            c.send_failures += 1
            if frame.messages:
                self._failed_sends.append((to, frame))

    def _on_soft_state(self, r: Replica, ss: SoftState) -> None:
        lead = ss.lead
        if lead != r.leader:
            r.leader = lead
            if lead:
                r.last_leader = lead
            self._events.publish(LeaderChanged(r.group_id, lead or None, r.rawnode.raft.term))
            self._notify_leader_waiters()

    # ------------------------------------------------------------ applying

    def _restored(self, r: Replica, snap: Snapshot) -> None:
        r.restore(snap)
        self._counters.snapshots_restored += 1
        self._set_conf_state(r, snap.metadata.conf_state, snap.metadata.index, persist=False)
        r.index_waiters = {i: s for i, s in r.index_waiters.items() if i > snap.metadata.index}

    def _apply_conf_changes(self, r: Replica, ents: list[Entry]) -> None:
        for e in ents:
            if e.type is _NORMAL:
                continue
            cc: ConfChange | ConfChangeV2
            try:
                if e.type is EntryType.CONF_CHANGE:
                    cc = ConfChange.from_bytes(e.data)
                else:
                    cc = ConfChangeV2.from_bytes(e.data)
            except ValueError:
                _log.error("group %d: undecodable conf change at %d", r.group_id, e.index)
                continue
            cs = r.rawnode.apply_conf_change(cc)
            self._set_conf_state(r, cs, e.index, persist=True)
            proposer, seq = decode_header(cc.context)
            if proposer == self.node_id:
                waiter = r.proposal_waiters.pop(seq, None)
                if waiter is not None:
                    waiter.set_result(cs)

    def _set_conf_state(self, r: Replica, cs: ConfState, index: int, *, persist: bool) -> None:
        old = r.conf_state
        if persist:
            r.write_for_next_batch().conf_state = cs
            self._dirty[r] = None
        if cs == old:
            return
        r.conf_state = cs
        self._forget_peers(old)
        self._learn_peers(cs)
        if not cs.is_empty():
            self._uninitialized.discard(r.group_id)
        self._events.publish(MembershipChanged(r.group_id, cs, index))

    def _deliver(self, r: Replica, batch: AppliedBatch, ents: list[Entry]) -> None:
        node_id = self.node_id
        waiters = r.proposal_waiters
        self._counters.commands_applied += len(batch.results)
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
            keep = self._policy.keep_entries
            w.compact_to = batch.applied - keep if batch.applied > keep else 0
            self._counters.snapshots_taken += 1
            self._dirty[r] = None

    def _apply_in_thread(self, r: Replica, rd: Ready) -> None:
        """Hand a blocking state machine's work to a worker thread; advance when done."""
        r.applying = rd
        snap = rd.snapshot
        ents = rd.committed_entries
        if snap is not None:
            self._set_conf_state(r, snap.metadata.conf_state, snap.metadata.index, persist=False)
        if ents:
            self._apply_conf_changes(r, ents)
        assert self._nursery is not None
        self._nursery.start_soon(self._run_applier, r, rd)

    async def _run_applier(self, r: Replica, rd: Ready) -> None:
        snap = rd.snapshot
        ents = rd.committed_entries

        def work() -> AppliedBatch:
            if snap is not None:
                r.restore(snap)
            return r.apply_commands(ents) if ents else AppliedBatch()

        batch = await trio.to_thread.run_sync(work, limiter=self._apply_limiter)
        r.applying = None
        if r.removed:
            return
        if snap is not None:
            self._counters.snapshots_restored += 1
        self._deliver(r, batch, ents)
        r.rawnode.advance(rd)
        self._dirty[r] = None
        self._signal()

    # ============================================================ lifecycle

    async def _run_receiver(self) -> None:
        transport = self._transport
        while True:
            try:
                item = await transport.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            self._inbound.append(item)
            self._signal()

    def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._run_driver)
        nursery.start_soon(self._run_receiver)

    def _close(self) -> None:
        self._closed = True
        error = NodeClosedError("the node closed")
        for r in self._groups.values():
            r.fail_all(error)
        self._notify_leader_waiters()
        self._events.close()


def _check_group_id(group_id: object) -> None:
    if not isinstance(group_id, int) or isinstance(group_id, bool) or group_id < 0:
        raise ValueError(f"group_id must be a non-negative integer, got {group_id!r}")


def _check_replicas(node_id: int, replicas: Iterable[int]) -> list[int]:
    peers = list(replicas)
    if not peers:
        raise ValueError("replicas must name at least one node")
    for p in peers:
        if not isinstance(p, int) or isinstance(p, bool) or p <= 0:
            raise ValueError(f"replicas must be positive node ids, got {p!r}")
    if len(set(peers)) != len(peers):
        raise ValueError(f"replicas has duplicates: {peers!r}")
    if node_id not in peers:
        raise ValueError(f"replicas {peers!r} must include this node ({node_id})")
    return peers


def _members(cs: ConfState) -> set[int]:
    return {*cs.voters, *cs.learners, *cs.voters_outgoing, *cs.learners_next}


def _open_engine(data_dir: str | PathLike[str] | None) -> LogEngine:
    if data_dir is None:
        from storage.memory_engine import MemoryLogEngine

        return MemoryLogEngine()
    try:
        from storage.engine import DurableLogEngine
    except ImportError as exc:
        raise RuntimeError(
            "open_node(data_dir=...) needs the durable log engine (storage.engine), "
            "which is not available in this build"
        ) from exc
    engine: LogEngine = DurableLogEngine.open(os.fspath(data_dir))
    return engine


@asynccontextmanager
async def open_node(
    config: NodeConfig,
    *,
    transport: Transport,
    data_dir: str | PathLike[str] | None = None,
    log_engine: LogEngine | None = None,
) -> AsyncIterator[Node]:
    """Run a node; leaving the block stops its tasks and closes transport and storage.

    With ``data_dir`` the node keeps its logs in the durable engine there; with
    ``log_engine`` it uses that engine (and leaves it open: the caller owns it);
    with neither it keeps them in memory. When ``config.state_machine_factory`` is
    set, groups found in the engine are recovered at once with state machines
    from it; otherwise they are recovered by ``create_group``.
    """
    if not isinstance(config, NodeConfig):
        raise TypeError("config must be a NodeConfig")
    if data_dir is not None and log_engine is not None:
        raise ValueError("give data_dir or log_engine, not both")
    owns_engine = log_engine is None
    engine = _open_engine(data_dir) if log_engine is None else log_engine
    in_thread = config.write_in_thread
    if in_thread is None:
        in_thread = not (log_engine is None and data_dir is None)
    node = Node(config, transport, engine, write_in_thread=in_thread)
    try:
        factory = config.state_machine_factory
        if factory is not None:
            for gid in list(engine.group_ids()):
                node._host(gid, factory(gid), None, lazily=False)
        async with trio.open_nursery() as nursery:
            node._start(nursery)
            try:
                yield node
            finally:
                node._close()
                nursery.cancel_scope.cancel()
    finally:
        node._close()
        with trio.CancelScope(shield=True):
            await transport.aclose()
        if owns_engine:
            engine.close()
