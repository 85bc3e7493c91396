"""The per-node coordinator: hosts many raft groups over one transport and one log engine.

One driver task owns every ``RawNode``. Each turn it ticks (when a tick is due)
the groups that are not quiesced (:mod:`multiraft.ticking`), hands the frames
that arrived to their groups (:mod:`multiraft.inbound`), runs the requests
callers queued (:mod:`multiraft.requests`), and then runs one ready cycle over
the groups with work (:mod:`multiraft.ready_cycle`): one log engine write for
all of them, one frame per destination node, then applying committed entries
(:mod:`multiraft.applying`) and advancing. Callers (``propose``, ``read``...)
never step a ``RawNode``: they queue a request and wait for its outcome.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from os import PathLike
from typing import Any

import attrs
import trio

from multiraft.applying import Applier
from multiraft.commits_during_write import CommitsDuringWrite
from multiraft.config import NodeConfig
from multiraft.counters import NodeCounters
from multiraft.errors import (
    GroupExistsError,
    GroupFailedError,
    GroupNotFoundError,
    GroupRemovedError,
    NodeClosedError,
    NotLeaderError,
    ProposalTimeoutError,
)
from multiraft.events import EventHub, EventSubscription, GroupRemoved
from multiraft.frames import Frame
from multiraft.group_spec import GroupSpec
from multiraft.groups import GroupTable
from multiraft.heartbeats import Outbox
from multiraft.inbound import Inbound
from multiraft.log_writer import LogWriter, WriteDurations
from multiraft.outbound import FrameSender
from multiraft.ports import LogEngine, RemovedGroupsLog, Transport
from multiraft.proposals import Completions, Proposal, Waiter, encode_header
from multiraft.raft.errors import ProposalDroppedError
from multiraft.raft.types import NONE, ConfChange, ConfChangeV2, ConfState
from multiraft.ready_cycle import ReadyCycle
from multiraft.replica import Replica
from multiraft.request_deadlines import RequestDeadlines
from multiraft.requests import RequestQueue, track_index
from multiraft.state_machine import StateMachine
from multiraft.ticking import Ticker

__all__ = ["Node", "open_node"]


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
        self._counters = NodeCounters()
        self._events = EventHub(config.event_buffer)
        self._table = table = GroupTable(config, engine, self._events, self._counters)
        if isinstance(engine, RemovedGroupsLog):
            table.unknown.tombstones.update(engine.removed_groups())
        self._outbox = Outbox(
            self.node_id,
            skips_heartbeats=config.skip_redundant_heartbeats
            and config.election_ticks > 3 * config.heartbeat_ticks,
        )
        self._sender = FrameSender(
            self.node_id, transport, self._outbox, table.liveness, self._counters
        )
        self._writer = LogWriter(engine, write_in_thread, self._counters)
        self._inbound = Inbound(table, self._outbox)
        self._requests = RequestQueue(table, self._signal)
        self._ticker = Ticker(table, self._outbox)
        self._applier = Applier(table, self._start_soon, self._signal, self._ticker.quiesce_if_idle)
        self._during_write = CommitsDuringWrite(table, self._inbound, self._applier)
        self._cycle = ReadyCycle(
            table,
            self._writer,
            self._sender,
            self._applier,
            self._notify_leader_waiters,
            self._during_write,
        )
        self._deadlines = RequestDeadlines()
        self._wakeup = trio.Event()
        self._leader_changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._closed = False
        # Proposal ids of this run start past those of every earlier run (see
        # NodeConfig.first_proposal_id): entries proposed before a restart may be
        # applied after it, and must not answer the new run's waiters.
        first = config.first_proposal_id
        self._seq = _random_first_proposal_id() if first is None else first

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
        ``replicas`` is ignored. ``campaign=True`` starts an election here as soon
        as the initial membership is applied, in the node's next ready cycle (see
        :meth:`campaign`); the call does not wait for it. Raises
        ``GroupExistsError`` if hosted, ``GroupRemovedError`` if tombstoned,
        ``ValueError`` for an invalid id or replica list.
        """
        await self.create_groups(
            [GroupSpec(group_id, replicas, state_machine, campaign=campaign, join=join)]
        )

    async def create_groups(self, specs: Iterable[GroupSpec]) -> None:
        """Host many groups at once (see :meth:`create_group` for one).

        Every spec is checked before any group is hosted: one invalid, hosted,
        tombstoned or repeated group id raises and creates none. The groups are
        hosted in order without waiting on the driver, so creating thousands costs
        one ready cycle, not one each; those with ``campaign`` start their
        elections in that cycle.
        """
        self._check_open()
        todo = list(specs)
        peers = [self._check_spec(spec) for spec in todo]
        seen: set[int] = set()
        for spec in todo:
            if spec.group_id in seen:
                raise ValueError(f"group {spec.group_id} appears twice")
            seen.add(spec.group_id)
        restored = await self._restore_blocking(todo)
        table = self._table
        requests = self._requests
        step = self._inbound.step
        unknown = table.unknown
        table.reserve(todo)
        for spec, members in zip(todo, peers, strict=True):
            gid = spec.group_id
            r = table.host(gid, spec.state_machine, members, lazily=False, restored=gid in restored)
            if len(unknown):
                for m in unknown.take(gid):
                    step(r, m)
            if spec.campaign:
                requests.add(r, Replica.campaign)
        self._signal()
        await trio.lowlevel.checkpoint()

    async def campaign(self, group_id: int) -> None:
        """Start an election for ``group_id`` on this node now; return once started.

        A no-op (never an error) when this replica leads, already runs an election,
        follows a known leader or has voted for another candidate in this term. A
        new group's election starts once its initial membership is applied.
        """
        r = self._live_replica(group_id)
        done = Waiter()
        r.add_campaign_waiter(done)
        self._requests.add(r, Replica.campaign)
        await done.wait()

    async def propose(self, group_id: int, command: bytes) -> object:
        """Replicate ``command``; return the state machine's result once applied here.

        On a follower the proposal is forwarded to the leader. Proposals queued
        for one group in the same driver turn go to raft as one batch. Raises
        ``GroupNotFoundError``/``GroupRemovedError``/``GroupFailedError``,
        ``NotLeaderError`` when no leader is known within ``proposal_timeout``,
        ``ProposalDroppedError`` when raft refuses it or another leader's entry
        replaced it, and ``ProposalTimeoutError`` when it is not applied within the
        deadline. An exception raised by the state machine's ``apply`` is raised
        here.
        """
        if not isinstance(command, bytes):
            raise TypeError(f"command must be bytes, got {type(command).__name__}")
        self._counters.proposals += 1
        r = self._live_replica(group_id)
        deadline = trio.current_time() + self.config.proposal_timeout
        if r.leader == NONE or r.removed:
            await self._await_leader(r, deadline)
        waiter = Waiter()
        waiters, seq = self._queue_proposal(r, command, waiter)
        return await self._outcome(r, waiter, deadline, waiters, seq, "proposal")

    def propose_nowait(
        self, group_id: int, command: bytes, completions: Completions, tag: object = None
    ) -> Waiter:
        """Submit ``command`` like :meth:`propose`, without waiting for its outcome.

        Returns the request's :class:`~multiraft.proposals.Waiter` (``tag`` is
        kept on it as ``waiter.tag``); once the outcome is in, the waiter joins
        ``completions`` and ``waiter.result()`` returns what :meth:`propose`
        would have returned or raises what it would have raised. Every request
        accepted reports there exactly once, at the latest when its
        ``proposal_timeout`` passes or the node closes.

        For a caller with many requests in flight (a server, a load generator)
        this costs no task per request, and one wake-up per batch of outcomes.
        Unlike :meth:`propose` it does not wait for a leader: with no leader
        known it raises ``NotLeaderError`` at once. It also raises
        ``GroupNotFoundError``/``GroupRemovedError``/``GroupFailedError`` and
        ``NodeClosedError`` at once; nothing is submitted then.
        """
        if not isinstance(command, bytes):
            raise TypeError(f"command must be bytes, got {type(command).__name__}")
        if not isinstance(completions, Completions):
            raise TypeError(f"completions must be a Completions, got {type(completions).__name__}")
        r = self._live_replica(group_id)
        if r.removed:
            raise GroupRemovedError(group_id)
        if r.leader == NONE:
            raise NotLeaderError(group_id, r.last_leader or None)
        self._counters.proposals += 1
        waiter = Waiter(completions, tag)
        waiters, seq = self._queue_proposal(r, command, waiter)
        deadline = trio.current_time() + self.config.proposal_timeout
        if not self._deadlines.add(deadline, waiter, r, waiters, seq, "proposal"):
            # Refused: the timer task has not started yet, or proposal_timeout was
            # lowered. No task waits for this request, so one of its own expires it.
            self._start_soon(self._expire_at, deadline, r, waiter, waiters, seq)
        return waiter

    async def read(self, group_id: int) -> int:
        """Linearizable read barrier: return once this replica applied a read index.

        After it returns, reading the local state machine observes every write
        acknowledged before the call. Returns the read index. Errors as
        :meth:`propose`.
        """
        r = self._live_replica(group_id)
        deadline = trio.current_time() + self.config.proposal_timeout
        await self._await_leader(r, deadline)
        seq = self._next_seq()
        ctx = encode_header(self.node_id, seq)
        waiter = Waiter()
        r.writable_read_waiters()[ctx] = waiter

        def run(r: Replica) -> None:
            r.rawnode.read_index(ctx)

        self._requests.add(r, run)
        index = await self._outcome(r, waiter, deadline, r.read_waiters, ctx, "read")
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
        r = self._live_replica(group_id)
        deadline = trio.current_time() + self.config.proposal_timeout
        await self._await_leader(r, deadline)
        seq = self._next_seq()
        waiter = Waiter()
        r.writable_proposal_waiters()[seq] = waiter
        cc = attrs.evolve(change, context=encode_header(self.node_id, seq) + change.context)

        def run(r: Replica) -> None:
            try:
                r.rawnode.propose_conf_change(cc)
            except ProposalDroppedError as exc:
                r.proposal_waiters.pop(seq, None)
                waiter.set_error(exc)
                return
            track_index(r, seq)

        self._requests.add(r, run)
        result = await self._outcome(
            r, waiter, deadline, r.proposal_waiters, seq, "membership change"
        )
        assert isinstance(result, ConfState)
        return result

    async def transfer_leadership(self, group_id: int, to_node: int) -> None:
        """Ask the group's leader to hand leadership to ``to_node``; wait until it has.

        Raises ``ValueError`` if ``to_node`` is not a voter, ``ProposalTimeoutError``
        if the transfer did not complete within ``proposal_timeout``.
        """
        r = self._live_replica(group_id)
        if to_node not in r.conf_state.voters:
            raise ValueError(f"to_node {to_node} is not a voter of group {group_id}")
        deadline = trio.current_time() + self.config.proposal_timeout

        def run(r: Replica) -> None:
            r.rawnode.transfer_leader(to_node)

        self._requests.add(r, run)
        while r.leader != to_node:
            self._check_live(r)
            with trio.move_on_at(deadline):
                await self._leader_changed.wait()
                continue
            raise ProposalTimeoutError(group_id, r.leader or None, "leadership transfer")

    async def remove_group(self, group_id: int) -> None:
        """Stop hosting ``group_id``, drop its log and leave a tombstone.

        Outstanding requests fail with ``GroupRemovedError``; later messages for
        the group are dropped and it cannot be created again on this node. With a
        log engine that keeps tombstones (the durable one does) this holds after a
        restart too.
        """
        r = self._replica(group_id)
        self._table.forget(r)
        self._table.unknown.tombstones.add(group_id)
        r.fail_all(GroupRemovedError(group_id))
        self._notify_leader_waiters()
        await self._writer.remove_group(group_id)
        self._events.publish(GroupRemoved(group_id))

    def leader_of(self, group_id: int) -> int | None:
        """The leader this replica knows of, or None."""
        return self._replica(group_id).leader or None

    def group_ids(self) -> list[int]:
        """The hosted groups, ascending (failed groups included)."""
        return sorted(self._table.replicas)

    def events(self) -> EventSubscription:
        """Subscribe to events published from now on (bounded buffer, oldest dropped)."""
        return self._events.subscribe()

    def stats(self) -> dict[str, int]:
        """Counters (monotonic, see :class:`~multiraft.counters.NodeCounters`) and gauges.

        Gauges: ``groups`` (hosted), ``quiesced_groups``, ``dormant_groups``
        (quiesced with their raft member folded away), ``active_groups``
        (ticked), ``failed_groups``, ``corrupt_groups`` (damaged logs waiting for a
        snapshot), ``dead_peers``, ``unknown_groups_buffered``,
        ``unknown_messages_buffered``, ``tombstones``,
        ``snapshot_sends_in_flight``; counters kept outside ``NodeCounters``:
        ``unknown_messages_dropped`` and ``snapshot_sends_refused``.
        """
        table = self._table
        out = attrs.asdict(self._counters)
        failed = len(table.failed)
        out["groups"] = len(table.replicas)
        out["quiesced_groups"] = len(table.replicas) - len(table.active) - failed
        out["dormant_groups"] = table.dormant_replicas
        out["active_groups"] = len(table.active)
        out["failed_groups"] = failed
        out["corrupt_groups"] = len(table.corrupt)
        out["dead_peers"] = len(table.liveness.dead)
        out["unknown_groups_buffered"] = len(table.unknown)
        out["unknown_messages_buffered"] = table.unknown.buffered_messages
        out["unknown_messages_dropped"] = table.unknown.dropped
        out["tombstones"] = len(table.unknown.tombstones)
        out["snapshot_sends_in_flight"] = len(table.snapshot_sends)
        out["snapshot_sends_refused"] = table.snapshot_sends.refused
        return out

    def write_durations(self) -> WriteDurations:
        """Histograms of this node's durable log writes since it opened (a snapshot).

        ``waited`` is how long each ready cycle waited for its write, ``in_engine``
        the log engine's own share; subtract an earlier snapshot
        (:meth:`~multiraft.log_writer.WriteDurations.minus`) for a window.
        """
        return self._writer.durations.copy()

    def is_quiesced(self, group_id: int) -> bool:
        """Whether the group is quiesced on this node."""
        return self._replica(group_id).quiesced

    def status(self, group_id: int) -> Any:
        """The raft ``Status`` of this replica."""
        return self._table.status(self._replica(group_id))

    def membership(self, group_id: int) -> ConfState:
        """The group's membership as this replica has applied it so far."""
        return self._replica(group_id).conf_state

    def applied_index(self, group_id: int) -> int:
        """The index the group's state machine has applied on this node."""
        return self._replica(group_id).applied

    def failure_of(self, group_id: int) -> str | None:
        """Why the group was stopped on this node, or None if it runs."""
        return self._replica(group_id).failed

    # ============================================================ request plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise NodeClosedError("the node is closed")

    def _check_spec(self, spec: GroupSpec) -> list[int] | None:
        if not isinstance(spec, GroupSpec):
            raise TypeError(f"expected a GroupSpec, got {type(spec).__name__}")
        gid = spec.group_id
        _check_group_id(gid)
        peers = None if spec.join else _check_replicas(self.node_id, spec.replicas)
        if gid in self._table.unknown.tombstones:
            raise GroupRemovedError(gid)
        if gid in self._table.replicas:
            raise GroupExistsError(gid)
        return peers

    async def _restore_blocking(self, specs: list[GroupSpec]) -> set[int]:
        """Restore recovered groups with blocking state machines off the event loop."""
        restored: set[int] = set()
        for spec in specs:
            if not getattr(spec.state_machine, "blocking", False):
                continue
            snap = self._engine.storage(spec.group_id).snapshot()
            if not snap.is_empty():
                await trio.to_thread.run_sync(spec.state_machine.restore, snap.data)
                restored.add(spec.group_id)
        if restored:
            # Another task may have created one of them meanwhile.
            for spec in specs:
                if spec.group_id in self._table.replicas:
                    raise GroupExistsError(spec.group_id)
        return restored

    def _replica(self, group_id: int) -> Replica:
        self._check_open()
        r = self._table.replicas.get(group_id)
        if r is None:
            if group_id in self._table.unknown.tombstones:
                raise GroupRemovedError(group_id)
            raise GroupNotFoundError(group_id)
        return r

    def _live_replica(self, group_id: int) -> Replica:
        r = self._replica(group_id)
        if r.failed is not None:
            raise GroupFailedError(group_id, r.failed)
        return r

    def _check_live(self, r: Replica) -> None:
        self._check_open()
        if r.removed:
            raise GroupRemovedError(r.group_id)
        if r.failed is not None:
            raise GroupFailedError(r.group_id, r.failed)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _signal(self) -> None:
        self._wakeup.set()

    def _start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

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
        waiters: dict[Any, Waiter],
        key: Any,
        what: str,
    ) -> object:
        """Wait for ``waiter`` until ``deadline``; ``key`` leaves ``waiters`` unless done.

        The node's deadline timer fails the waiter at ``deadline`` when it takes
        the request (it usually does: see :mod:`multiraft.request_deadlines`);
        otherwise this call waits under a cancel scope of its own.
        """
        if self._deadlines.add(deadline, waiter, r, waiters, key, what):
            try:
                return await waiter.wait()
            finally:
                if not waiter.done:
                    waiters.pop(key, None)
        try:
            with trio.move_on_at(deadline):
                return await waiter.wait()
        finally:
            if not waiter.done:
                waiters.pop(key, None)
        raise ProposalTimeoutError(r.group_id, r.leader or r.last_leader or None, what)

    def _queue_proposal(
        self, r: Replica, command: bytes, waiter: Waiter
    ) -> tuple[dict[int, Waiter], int]:
        """Queue ``command`` for ``r``'s next driver turn with ``waiter`` for its outcome.

        Returns the waiters map it joined and its sequence number (its key there).
        """
        self._seq = seq = self._seq + 1
        waiters = r.writable_proposal_waiters()
        waiters[seq] = waiter
        self._requests.add(r, Proposal(encode_header(self.node_id, seq) + command, seq, waiter))
        return waiters, seq

    async def _expire_at(
        self, deadline: float, r: Replica, waiter: Waiter, waiters: dict[Any, Waiter], key: Any
    ) -> None:
        """Fail ``waiter`` with ``ProposalTimeoutError`` at ``deadline`` unless done by then."""
        await trio.sleep_until(deadline)
        if not waiter.done:
            waiters.pop(key, None)
            waiter.set_error(
                ProposalTimeoutError(r.group_id, r.leader or r.last_leader or None, "proposal")
            )

    # ================================================================ driver

    async def _run_driver(self) -> None:
        interval = self.config.tick_interval
        next_tick = trio.current_time() + interval
        sender = self._sender
        inbound = self._inbound
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
                self._ticker.tick()
                next_tick += interval
                if next_tick <= now:
                    # Fell behind (a long pause): skip the missed ticks, do not burst.
                    next_tick = now + interval
            if sender.failed:
                inbound.process_failed_sends(sender.take_failed())
            inbound.process()
            self._requests.run()
            await self._cycle.run()
            self._table.hibernate_settled()
            if ticked:
                sender.send_keepalives()

    def _has_work(self) -> bool:
        return bool(
            self._table.dirty
            or self._inbound
            or self._requests
            or self._sender.failed
            or self._outbox.frames
        )

    async def _run_receiver(self) -> None:
        transport = self._transport
        inbound = self._inbound
        during_write = self._during_write
        while True:
            try:
                item = await transport.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            if during_write.writing and isinstance(item, Frame) and during_write.take(item):
                # Stepped now; what it changed goes out in the next cycle.
                self._signal()
                continue
            inbound.items.append(item)
            self._signal()

    # ============================================================ lifecycle

    def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        nursery.start_soon(self._run_driver)
        nursery.start_soon(self._run_receiver)
        nursery.start_soon(self._deadlines.run)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        error = NodeClosedError("the node closed")
        for r in self._table.replicas.values():
            if r.has_pending_requests or r.campaign_waiters:
                r.fail_all(error)
        self._notify_leader_waiters()
        self._events.close()


def _random_first_proposal_id() -> int:
    """A random start below 2**62: the header's 64 bits leave 2**62 ids above it,
    and two runs' ids overlap only with odds of about (ids used) / 2**62."""
    return int.from_bytes(os.urandom(8), "big") >> 2


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
                node._table.host(gid, factory(gid), None, lazily=False)
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
