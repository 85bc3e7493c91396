"""The deterministic simulator: one seed, N nodes, M groups, faults, workloads and checkers.

:func:`run_seed` runs one whole simulation in its own deterministic trio run
(see :mod:`multiraft.testing.sim_runtime`): everything random (node settings,
network weather, faults, crash points, client choices, raft's election timers,
trio's scheduling order) derives from the one integer seed, so a seed replays
exactly, and the hash of its event trace says so.

A run:

1. starts the nodes and creates the groups (each on three nodes, or on all
   nodes when there are three), a designated member campaigning;
2. runs the workloads (raw proposals over all groups, KV clients on a few
   groups, membership races when there are spare nodes) while the fault
   schedule takes its steps;
3. heals every fault and starts every node that is down, then checks
   liveness: within ``liveness_seconds`` every group accepts a proposal, and
   every member of every group applies the same commands;
4. checks what only the end can tell: every acknowledged proposal is in the
   committed log at the index it was acknowledged with, the KV history is
   linearizable, every member ends in the same state.

The safety checker (:mod:`multiraft.testing.safety`) watches throughout and
stops the run at the first violation.
"""

from __future__ import annotations

import abc
import functools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import attrs
import trio

from multiraft.errors import GroupNotFoundError, GroupRemovedError
from multiraft.raft.types import StateType
from multiraft.testing.faults import FaultSchedule, draw_weights
from multiraft.testing.history import History
from multiraft.testing.linearizability import LinearizabilityResult, check_history
from multiraft.testing.safety import SafetyChecker, Violation
from multiraft.testing.sim_cluster import NodeOptions, SimCluster, members
from multiraft.testing.sim_network import LinkFaults
from multiraft.testing.sim_runtime import CostMeter, SimulatedThreads, run_deterministic
from multiraft.testing.sim_state_machine import RAW, encode_raw
from multiraft.testing.trace import EventTrace
from multiraft.testing.workloads import (
    NOT_SUBMITTED,
    OUTCOME_UNKNOWN,
    KVClients,
    MembershipRaces,
    Placement,
    RawProposals,
)

__all__ = [
    "GroupsRun",
    "SimConfig",
    "SimResult",
    "SimRun",
    "draw_node_options",
    "replay_command",
    "run_seed",
]

#: Replicas per group when there are more nodes than that.
REPLICAS = 3
#: The workloads a run can drive.
WORKLOADS = ("groups", "rangekv")


@attrs.frozen(kw_only=True)
class SimConfig:
    """The shape of a simulation; the seed decides everything else.

    ``workload`` is ``"groups"`` (``groups`` raft groups with raw proposals, KV
    clients on ``kv_groups`` of them and membership races) or ``"rangekv"`` (the
    range-splitting store of ``examples/rangekv`` with clients on ``keys`` keys,
    splits and replica moves). ``options`` fixes the node settings (None: drawn from the seed);
    ``fault_weights`` replaces drawn weights of the named fault kinds;
    ``membership`` None runs membership races when there are spare nodes.
    """

    workload: str = "groups"
    nodes: int = 3
    groups: int = 20
    keys: int = 32
    steps: int = 20
    kv_groups: int = 4
    kv_clients: int = 4
    raw_clients: int = 2
    membership: bool | None = None
    liveness_seconds: float = 40.0
    options: NodeOptions | None = None
    fault_weights: dict[str, float] = attrs.field(factory=dict)
    keep_trace: bool = False
    verbose_trace: bool = False

    def __attrs_post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(
                f"workload must be one of {', '.join(WORKLOADS)}, got {self.workload!r}"
            )
        if not 3 <= self.nodes <= 9:
            raise ValueError(f"nodes must be between 3 and 9, got {self.nodes}")
        if self.groups < 1:
            raise ValueError(f"groups must be at least 1, got {self.groups}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


@attrs.define(kw_only=True)
class SimResult:
    """What one seed's run found."""

    seed: int
    config: SimConfig
    options: NodeOptions
    violations: list[Violation]
    trace_hash: str
    trace_events: int
    trace_lines: list[str]
    faults: Counter[str]
    fault_log: list[tuple[float, str]]
    kv_operations: int
    kv_unknown: int
    acknowledged: int
    entries_committed: int
    applies_checked: int
    elections: int
    membership_changes: int
    splits: int
    simulated_seconds: float
    wall_seconds: float

    @property
    def ok(self) -> bool:
        """True when no property was violated."""
        return not self.violations

    @property
    def operations_checked(self) -> int:
        """KV operations checked for linearizability plus acknowledged proposals verified."""
        return self.kv_operations + self.acknowledged

    def failure_report(self) -> str:
        """The seed, the violations, a summary of the fault schedule and the replay command."""
        lines = [f"seed {self.seed}: {len(self.violations)} violation(s)"]
        lines += ["  " + v.describe() for v in self.violations]
        counts = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        lines.append(f"  faults: {counts or 'none'}")
        o = self.options
        lines.append(
            f"  nodes: pre_vote={o.pre_vote} quiesce={o.quiesce} election_ticks={o.election_ticks}"
            f" max_size_per_msg={o.max_size_per_msg} max_inflight_msgs={o.max_inflight_msgs}"
            f" snapshot_entries={o.snapshot_entries}"
        )
        first = self.violations[0].at if self.violations else float("inf")
        before = [(t, what) for t, what in self.fault_log if t <= first]
        if before:
            lines.append(f"  last faults before t={first:.3f}:")
            lines += [f"    {t:9.3f}  {what}" for t, what in before[-15:]]
        lines.append(f"  replay: {replay_command(self.seed, self.config)}")
        return "\n".join(lines)


def replay_command(seed: int, config: SimConfig) -> str:
    """The command that replays ``seed`` with ``config``'s shape, printing its trace."""
    default = SimConfig()
    parts = ["multiraft sim", f"--seed {seed}"]
    options = ("workload", "nodes", "groups", "keys", "steps")
    for name, flag in ((o, "--" + o) for o in options):
        value = getattr(config, name)
        if value != getattr(default, name):
            parts.append(f"{flag} {value}")
    parts.append("--trace")
    return " ".join(parts)


def draw_node_options(rng: random.Random) -> NodeOptions:
    """One seed's node settings."""
    return NodeOptions(
        election_ticks=rng.choice((6, 10, 10, 15)),
        pre_vote=rng.random() < 0.8,
        quiesce=rng.random() < 0.5,
        # A tiny limit sends one entry per append, as a slow link or big entries would.
        max_size_per_msg=1 if rng.random() < 0.3 else 1 << 20,
        max_inflight_msgs=rng.choice((1, 4, 64, 256)),
        snapshot_entries=rng.choice((10, 50, 200, 1000)),
        snapshot_keep_entries=rng.choice((0, 5, 20)),
        step_down_on_removal=rng.random() < 0.5,
    )


class SimRun(abc.ABC):
    """What every workload's run shares: cluster, checker, trace, faults, history.

    A subclass drives its workload in :meth:`run_workload` and counts what it did
    in :meth:`counts`.
    """

    def __init__(self, seed: int, config: SimConfig) -> None:
        from transport.memory import MemoryNetwork

        self.seed = seed
        self.config = config
        self.rng = random.Random(f"{seed}-setup")
        self.options = config.options or draw_node_options(self.rng)
        self.trace = EventTrace(keep_lines=config.keep_trace, verbose=config.verbose_trace)
        self.checker = SafetyChecker(self.trace)
        self.meter = CostMeter()
        self.threads = SimulatedThreads(self.meter)
        self.history = History(self.trace)
        self.node_ids = list(range(1, config.nodes + 1))
        self.simulated_seconds = 0.0
        self._scope: trio.CancelScope | None = None
        network = MemoryNetwork(seed=self.rng.randrange(1 << 62))
        faults = LinkFaults(random.Random(f"{seed}-links"))
        self.cluster = SimCluster(
            self.node_ids,
            seed=seed,
            network=network,
            faults=faults,
            checker=self.checker,
            trace=self.trace,
            meter=self.meter,
            options=self.options,
            rng=self.rng,
        )
        weights = draw_weights(random.Random(f"{seed}-weights"), config.fault_weights)
        self.schedule = FaultSchedule(
            self.cluster, faults, random.Random(f"{seed}-faults"), self.trace, weights
        )
        self.linearizability: LinearizabilityResult | None = None

    def _stop_on_violation(self, violation: Violation) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def main(self) -> None:
        """The whole run, inside the deterministic trio run."""
        self.trace.clock = trio.current_time
        self.checker.on_violation = self._stop_on_violation
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            self.cluster.bind(nursery)
            with trio.CancelScope() as scope:
                self._scope = scope
                for i in self.node_ids:
                    await self.schedule.start_node(i)
                await self.run_workload()
            nursery.cancel_scope.cancel()
        self.simulated_seconds = trio.current_time() - start

    @abc.abstractmethod
    async def run_workload(self) -> None:
        """Set up, run the workload under the fault schedule, heal and check the end."""

    @abc.abstractmethod
    def counts(self) -> tuple[int, int, int]:
        """``(acknowledged proposals, membership changes, splits)`` of the run."""

    async def run_clients(self, clients: list[Callable[[trio.Event], Awaitable[None]]]) -> None:
        """Run ``clients`` while the fault schedule takes its steps; then heal everything."""
        stop = trio.Event()
        async with trio.open_nursery() as work:
            for client in clients:
                work.start_soon(client, stop)
            await self.schedule.run(self.config.steps, work)
            stop.set()
        await self.schedule.heal_all()

    def check_linearizability(self) -> None:
        """Check the client history; every key that fails is a violation."""
        result = check_history(self.history.operations)
        self.linearizability = result
        for key in result.failures():
            self.checker.violation("linearizability", key.describe(), key.space)

    def result(self, wall: float) -> SimResult:
        """What the run found."""
        checker = self.checker
        acknowledged, membership_changes, splits = self.counts()
        return SimResult(
            seed=self.seed,
            config=self.config,
            options=self.options,
            violations=list(checker.violations),
            trace_hash=self.trace.digest(),
            trace_events=self.trace.events,
            trace_lines=self.trace.lines,
            faults=Counter(self.schedule.counts),
            fault_log=list(self.schedule.log),
            kv_operations=len(self.history.operations),
            kv_unknown=self.history.unknown_count,
            acknowledged=acknowledged,
            entries_committed=checker.entries_committed,
            applies_checked=checker.applies_checked,
            elections=checker.elections,
            membership_changes=membership_changes,
            splits=splits,
            simulated_seconds=self.simulated_seconds,
            wall_seconds=wall,
        )


class GroupsRun(SimRun):
    """Many raft groups: raw proposals, KV clients, membership races."""

    def __init__(self, seed: int, config: SimConfig) -> None:
        super().__init__(seed, config)
        cluster = self.cluster
        self.placement = Placement()
        self.groups = list(range(1, config.groups + 1))
        self.raw = RawProposals(cluster, self.placement, self.groups, seed=seed, trace=self.trace)
        kv_groups = self.groups[: max(1, min(config.kv_groups, len(self.groups)))]
        self.kv = KVClients(cluster, self.placement, kv_groups, self.history, seed=seed)
        self.members = MembershipRaces(
            cluster, self.placement, self.groups, seed=seed, trace=self.trace
        )

    def counts(self) -> tuple[int, int, int]:
        """``(acknowledged proposals, membership changes, splits)`` of the run."""
        return len(self.raw.acknowledged), sum(self.members.applied.values()), 0

    async def run_workload(self) -> None:
        """Create the groups, run the clients under faults, then check liveness and the end."""
        cfg = self.config
        await self._create_groups()
        if not await self._await_leaders(cfg.liveness_seconds):
            return
        clients: list[Callable[[trio.Event], Awaitable[None]]] = []
        clients += [functools.partial(self.kv.client, c + 1) for c in range(cfg.kv_clients)]
        clients += [functools.partial(self.raw.client, 1000 + c) for c in range(cfg.raw_clients)]
        if cfg.membership if cfg.membership is not None else cfg.nodes > REPLICAS:
            clients.append(self.members.run)
        await self.run_clients(clients)
        if not await self._check_liveness():
            return
        if not await self._check_convergence():
            return
        # No crash can come any more: what the nodes wrote without a sync reaches
        # the disks (commit moves an idle group wrote last are only there).
        for engine in self.checker.engines.values():
            engine.write_back()
        self._check_acknowledged()
        self.check_linearizability()

    async def _create_groups(self) -> None:
        cluster = self.cluster
        for g in self.groups:
            if len(self.node_ids) > REPLICAS:
                members = sorted(self.rng.sample(self.node_ids, REPLICAS))
            else:
                members = list(self.node_ids)
            self.placement.set(g, members)
            leader = members[g % len(members)]
            for m in members:
                node = cluster.node(m)
                assert node is not None
                sm = cluster.state_machine_factory(cluster.nodes[m])(g)
                await node.create_group(g, members, state_machine=sm, campaign=(m == leader))

    async def _await_leaders(self, seconds: float) -> bool:
        leaders = self.checker.current_leader
        with trio.move_on_after(seconds):
            while len(leaders) < len(self.groups):
                await trio.sleep(0.05)
            return True
        missing = [g for g in self.groups if g not in leaders]
        self.checker.violation(
            "liveness",
            f"groups {missing[:10]} elected no leader within {seconds:.0f} s of creation",
        )
        return False

    # ------------------------------------------------------------ liveness

    async def _check_liveness(self) -> bool:
        """After healing, every group must accept a proposal within the bound."""
        deadline = trio.current_time() + self.config.liveness_seconds
        failures: dict[int, str] = {}

        async def probe(g: int) -> None:
            rng = random.Random(f"{self.seed}-probe-{g}")
            attempt = 0
            last = "no member running"
            while trio.current_time() < deadline:
                attempt += 1
                self.placement.refresh(self.cluster, g)
                node_id = self.placement.pick(self.cluster, g, rng)
                node = None if node_id is None else self.cluster.node(node_id)
                if node is not None:
                    with trio.move_on_at(deadline):
                        try:
                            await node.propose(g, encode_raw(b"probe.%d" % attempt))
                            return
                        except (*NOT_SUBMITTED, *OUTCOME_UNKNOWN) as exc:
                            last = f"{type(exc).__name__}: {exc}"
                await trio.sleep(0.1)
            failures[g] = last

        async with trio.open_nursery() as nursery:
            for g in self.groups:
                nursery.start_soon(probe, g)
        for g in sorted(failures):
            self.checker.violation(
                "liveness",
                f"no proposal accepted within {self.config.liveness_seconds:.0f} s after "
                f"every fault healed (last error: {failures[g]})",
                g,
            )
        return not failures

    def _convergence_gap(self, g: int) -> str | None:
        """Why ``g``'s members have not converged yet (None: they have)."""
        cluster = self.cluster
        lead = self.checker.current_leader.get(g)
        if lead is None:
            return "no leader seen"
        leader = cluster.node(lead[1])
        if leader is None:
            return f"leader {lead[1]} is down"
        try:
            status = leader.status(g)
        except (GroupNotFoundError, GroupRemovedError):
            return f"leader {lead[1]} does not host the group"
        if status.soft_state.raft_state is not StateType.LEADER:
            return f"node {lead[1]} (last leader seen) is not leading"
        commit = status.hard_state.commit
        cs = leader.membership(g)
        self.placement.set(g, list(cs.voters), list(cs.learners))
        for m in sorted(members(cs)):
            node = cluster.node(m)
            if node is None:
                return f"member {m} is down"
            try:
                applied = node.applied_index(g)
            except (GroupNotFoundError, GroupRemovedError):
                return f"member {m} does not host the group"
            if applied != commit:
                return f"member {m} applied {applied}, the leader committed {commit}"
        return None

    async def _check_convergence(self) -> bool:
        """Every member of every group applies up to the leader's commit, in the same state."""
        deadline = trio.current_time() + self.config.liveness_seconds
        pending = list(self.groups)
        while pending and trio.current_time() < deadline:
            pending = [g for g in pending if self._convergence_gap(g) is not None]
            if pending:
                await trio.sleep(0.2)
        for g in pending:
            self.checker.violation(
                "liveness",
                f"members did not converge within {self.config.liveness_seconds:.0f} s after "
                f"every fault healed: {self._convergence_gap(g)}",
                g,
            )
        if pending:
            return False
        for g in self.groups:
            self._check_final_states(g)
        return True

    def _check_final_states(self, g: int) -> None:
        states = {}
        for m in self.placement.members[g]:
            sm = self.cluster.state_machine(m, g)
            if sm is not None:
                states[m] = (sm.applied_index, sm.chain, sorted(sm.data.items()))
        if len({repr(s) for s in states.values()}) > 1:
            self.checker.violation(
                "state machine safety",
                "members ended in different states: "
                + ", ".join(f"node {m} applied {s[0]}" for m, s in sorted(states.items())),
                g,
            )

    # -------------------------------------------------------- end checks

    def _check_acknowledged(self) -> None:
        committed = self.checker.committed
        for g, index, command in self.raw.acknowledged:
            rec = committed.get(g, {}).get(index)
            if rec is None or rec[2][-len(command) :] != command or command[:1] != RAW:
                self.checker.violation(
                    "acknowledged write lost",
                    f"proposal {command!r} was acknowledged at index {index} "
                    "but the committed entry there is another",
                    g,
                )


def run_seed(seed: int, config: SimConfig | None = None) -> SimResult:
    """Run one seed to the end (or to its first violation) and report."""
    config = config or SimConfig()
    run: SimRun
    if config.workload == "rangekv":
        from multiraft.testing.rangekv_sim import RangeKVRun

        run = RangeKVRun(seed, config)
    else:
        run = GroupsRun(seed, config)
    started = time.perf_counter()
    run_deterministic(run.main, seed=seed, threads=run.threads)
    return run.result(time.perf_counter() - started)
