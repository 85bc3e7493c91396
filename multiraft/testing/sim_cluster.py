"""The simulated cluster: nodes that run, crash and restart on one memory network.

Each :class:`SimNode` keeps what survives a crash (its log engine, i.e. its
disk, and its disk and state machine timing) and the running incarnation (the
:class:`~multiraft.node.Node`, its state machines, its cancel scope). A crash
cancels the incarnation: its tasks stop wherever they are, a write in
progress is lost (see :mod:`multiraft.testing.sim_engine`), frames queued for it
are dropped. A restart opens a new incarnation on the same engine, which
recovers every group it holds, with a possibly different clock rate.

A node task that raises is a finding, not a simulator error: the exception is
reported to the checker as a ``node failure`` violation.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import attrs
import trio

from multiraft.config import NodeConfig, UnknownGroupPolicy
from multiraft.errors import GroupNotFoundError, GroupRemovedError, NodeClosedError
from multiraft.events import GroupCreated, GroupFailed, MembershipChanged
from multiraft.node import Node, open_node
from multiraft.ports import Transport
from multiraft.raft.types import ConfState
from multiraft.testing.safety import SafetyChecker
from multiraft.testing.sim_engine import DiskModel, SimLogEngine
from multiraft.testing.sim_network import LinkFaults, SimTransport
from multiraft.testing.sim_runtime import CostMeter
from multiraft.testing.sim_state_machine import NodeSlowness, SimStateMachine
from multiraft.testing.trace import EventTrace

if TYPE_CHECKING:
    from transport.memory import MemoryNetwork

__all__ = ["NodeOptions", "Opener", "SimCluster", "SimNode", "members"]


#: Opens one incarnation of a node: ``opener(sim_node, config, transport)``.
Opener = Callable[["SimNode", NodeConfig, Transport], AbstractAsyncContextManager[Node]]


def members(cs: ConfState) -> set[int]:
    """Every node of a membership: voters, learners, outgoing voters, staged learners."""
    return {*cs.voters, *cs.learners, *cs.voters_outgoing, *cs.learners_next}


@attrs.frozen(slots=True)
class NodeOptions:
    """The raft and coordinator settings every simulated node shares (drawn per seed)."""

    tick_interval: float = 0.1
    election_ticks: int = 10
    pre_vote: bool = True
    quiesce: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 64
    proposal_timeout: float = 3.0
    snapshot_entries: int = 200
    snapshot_keep_entries: int = 20
    step_down_on_removal: bool = False


class SimNode:
    """One node id of the cluster: its durable parts and its running incarnation."""

    __slots__ = (
        "blocking_apply",
        "disk",
        "done",
        "engine",
        "host",
        "incarnation",
        "lifecycle",
        "node",
        "node_id",
        "scope",
        "slowness",
        "state_machines",
        "tick_scale",
    )

    def __init__(self, node_id: int, engine: SimLogEngine, disk: DiskModel) -> None:
        self.node_id = node_id
        self.engine = engine
        self.disk = disk
        self.slowness = NodeSlowness()
        #: Multiplies the tick interval of the running incarnation (clock rate).
        self.tick_scale = 1.0
        #: Whether the running incarnation applies through (simulated) worker threads.
        self.blocking_apply = False
        self.incarnation = 0
        #: Held while the node starts or crashes, so the two never interleave.
        self.lifecycle = trio.Lock()
        self.node: Node | None = None
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.state_machines: dict[int, SimStateMachine] = {}
        #: What a custom opener runs on the node (for example a range store host).
        self.host: object | None = None

    @property
    def running(self) -> bool:
        """Whether an incarnation is up."""
        return self.node is not None


class SimCluster:
    """``n`` simulated nodes; start, crash and restart them inside ``nursery``."""

    def __init__(
        self,
        node_ids: list[int],
        *,
        seed: int,
        network: MemoryNetwork,
        faults: LinkFaults,
        checker: SafetyChecker,
        trace: EventTrace,
        meter: CostMeter,
        options: NodeOptions,
        rng: random.Random,
    ) -> None:
        self.node_ids = node_ids
        self.seed = seed
        self.network = network
        self.faults = faults
        self.checker = checker
        self.trace = trace
        self.meter = meter
        self.options = options
        self.rng = rng
        #: Opens an incarnation (None: a plain node); a host such as the range store's
        #: replaces it: ``opener(sim_node, config, transport)`` yields the Node.
        self.opener: Opener | None = None
        #: Whether the simulated host removes replicas dropped from their group's
        #: membership (a host with its own replica management turns this off).
        self.collect_removed_replicas = True
        self.nodes: dict[int, SimNode] = {}
        for i in node_ids:
            disk = DiskModel(random.Random(f"{seed}-disk-{i}"))
            engine = SimLogEngine(i, disk, checker)
            checker.engines[i] = engine
            self.nodes[i] = SimNode(i, engine, disk)
        self._nursery: trio.Nursery | None = None

    def bind(self, nursery: trio.Nursery) -> None:
        """The nursery node incarnations run in."""
        self._nursery = nursery

    # --------------------------------------------------------------- access

    def running_nodes(self) -> list[int]:
        """Ids of the nodes that are up, ascending."""
        return [i for i in self.node_ids if self.nodes[i].running]

    def node(self, node_id: int) -> Node | None:
        """The running incarnation of ``node_id``, or None while it is down."""
        return self.nodes[node_id].node

    def state_machine(self, node_id: int, group_id: int) -> SimStateMachine | None:
        """The state machine of ``group_id`` in ``node_id``'s running incarnation."""
        sn = self.nodes[node_id]
        return sn.state_machines.get(group_id) if sn.running else None

    def state_machine_factory(self, sn: SimNode) -> Callable[[int], SimStateMachine]:
        """Makes (and registers) the state machines of ``sn``'s current incarnation."""

        def make(group_id: int) -> SimStateMachine:
            sm = SimStateMachine(
                group_id,
                sn.node_id,
                self.checker,
                meter=self.meter,
                slowness=sn.slowness,
                blocking=sn.blocking_apply,
            )
            sn.state_machines[group_id] = sm
            return sm

        return make

    # ------------------------------------------------------------ lifecycle

    def node_config(self, sn: SimNode) -> NodeConfig:
        """The configuration of ``sn``'s next incarnation."""
        o = self.options
        return NodeConfig(
            sn.node_id,
            tick_interval=o.tick_interval * sn.tick_scale,
            election_ticks=o.election_ticks,
            heartbeat_ticks=1,
            pre_vote=o.pre_vote,
            check_quorum=True,
            quiesce=o.quiesce,
            max_size_per_msg=o.max_size_per_msg,
            max_inflight_msgs=o.max_inflight_msgs,
            proposal_timeout=o.proposal_timeout,
            snapshot_entries=o.snapshot_entries,
            snapshot_keep_entries=o.snapshot_keep_entries,
            step_down_on_removal=o.step_down_on_removal,
            unknown_group_policy=UnknownGroupPolicy.CREATE,
            state_machine_factory=self.state_machine_factory(sn),
            write_in_thread=True,
            seed=(self.seed * 1_000_003 + sn.incarnation) & ((1 << 62) - 1),
            # Deterministic, and apart from every earlier incarnation's ids.
            first_proposal_id=sn.incarnation << 40,
        )

    async def start(self, node_id: int) -> Node:
        """Start a new incarnation of ``node_id`` on its engine (or return the running one)."""
        assert self._nursery is not None
        sn = self.nodes[node_id]
        async with sn.lifecycle:
            if sn.node is not None:
                return sn.node
            sn.incarnation += 1
            sn.state_machines = {}
            sn.done = trio.Event()
            node: Node = await self._nursery.start(self._run, sn)
        self.trace.record(
            "start",
            f"node {node_id} incarnation {sn.incarnation} tick x{sn.tick_scale:.2f}"
            f"{' blocking-apply' if sn.blocking_apply else ''}",
        )
        return node

    def _open(
        self, sn: SimNode, config: NodeConfig, transport: Transport
    ) -> AbstractAsyncContextManager[Node]:
        return open_node(config, transport=transport, log_engine=sn.engine)

    async def _run(self, sn: SimNode, task_status: trio.TaskStatus[Node]) -> None:
        inner = self.network.transport(sn.node_id)
        transport = SimTransport(inner, sn.node_id, self.faults, self.checker)
        opener = self._open if self.opener is None else self.opener
        started = False
        try:
            with trio.CancelScope() as scope:
                sn.scope = scope
                async with opener(sn, self.node_config(sn), transport) as node:
                    sn.node = node
                    started = True
                    task_status.started(node)
                    await self._watch(sn, node)
        except Exception as exc:  # a node that dies of an exception is the finding
            self.checker.violation("node failure", f"node {sn.node_id} raised {exc!r}")
            if not started:
                raise
        finally:
            sn.node = None
            sn.scope = None
            sn.done.set()

    async def _watch(self, sn: SimNode, node: Node) -> None:
        """Report failed groups; remove the replicas this node no longer belongs to.

        The second part is what a host must do (see ``collect_removed_replicas``):
        a replica removed from its group's membership is of no use any more, and
        a removed leader would otherwise keep heartbeating its followers (when
        ``step_down_on_removal`` is off, as in etcd) so that they never elect
        another. Hosts built on etcd raft stop such a replica (etcd stops the
        member, CockroachDB collects the replica); so does the simulated host, a
        grace period after it applies a membership without itself after one with
        itself (see ``_collect_later``). (A replica catching up from the start of
        the log applies memberships from before it joined: those do not count.)
        """
        collect = self.collect_removed_replicas
        was_member: set[int] = set()
        for g in node.group_ids():
            if sn.node_id in members(node.membership(g)):
                was_member.add(g)
        async with trio.open_nursery() as nursery, node.events() as events:
            async for ev in events:
                if isinstance(ev, GroupCreated) and not ev.lazily:
                    was_member.add(ev.group_id)  # created as one of its initial members
                elif isinstance(ev, MembershipChanged) and collect:
                    g = ev.group_id
                    if sn.node_id in members(ev.conf_state):
                        was_member.add(g)
                    elif g in was_member:
                        was_member.discard(g)
                        nursery.start_soon(self._collect_later, sn, node, g)
                elif isinstance(ev, GroupFailed):
                    # Raft refused an input as impossible. Every message in the
                    # simulation is one a correct peer could send, so this is a bug.
                    self.checker.violation(
                        "group failure",
                        f"node {sn.node_id} stopped the group: {ev.reason}",
                        ev.group_id,
                    )
            nursery.cancel_scope.cancel()

    async def _collect_later(self, sn: SimNode, node: Node, group_id: int) -> None:
        """Remove a replica dropped from its group, after a grace period.

        Removing it at once can strand the group: a leader that applied its own
        removal may be the only member that knows the removal committed; while it
        lingers it keeps telling the others (or votes for them), so they apply the
        new membership and elect among themselves. CockroachDB's replica GC is lazy
        for the same reason.
        """
        o = self.options
        await trio.sleep(3 * o.election_ticks * o.tick_interval * sn.tick_scale)
        try:
            cs = node.membership(group_id)
        except (GroupNotFoundError, GroupRemovedError, NodeClosedError):
            return
        if sn.node_id not in members(cs):
            await self._collect(sn, node, group_id)

    async def _collect(self, sn: SimNode, node: Node, group_id: int) -> None:
        self.trace.record("collect", f"node {sn.node_id} removes its replica of group {group_id}")
        with contextlib.suppress(GroupNotFoundError, GroupRemovedError, NodeClosedError):
            await node.remove_group(group_id)

    def membership(self, group_id: int) -> ConfState | None:
        """The membership the newest leader seen of ``group_id`` has applied (None: it is down)."""
        lead = self.checker.current_leader.get(group_id)
        if lead is None:
            return None
        node = self.nodes[lead[1]].node
        if node is None:
            return None
        try:
            cs = node.membership(group_id)
        except (GroupNotFoundError, GroupRemovedError, NodeClosedError):
            return None
        return None if cs.is_empty() else cs

    async def crash(self, node_id: int) -> None:
        """Kill ``node_id``'s incarnation at once; wait until its tasks are gone."""
        sn = self.nodes[node_id]
        async with sn.lifecycle:
            if sn.scope is None:
                return
            self.trace.record("crash", f"node {node_id}")
            sn.scope.cancel()
            await sn.done.wait()
            # What the node wrote without a sync may not have reached the disk.
            sn.engine.lose_unsynced()
