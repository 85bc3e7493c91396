"""What simulated clients do: raw proposals, KV operations, membership races.

Every client is a task that loops until the ``stop`` event is set, choosing
what to do with its own seeded generator. Outcomes are classified the way a
careful client must: an error raised before the request could be submitted
(no leader, group not hosted) means it certainly did not take effect; any
other error after submission (timeout, proposal dropped, node closed under
it) leaves the outcome unknown. Every other proposal of a client goes through
``Node.propose_nowait`` and a ``Completions`` queue instead of ``propose``, so
both submission paths meet every fault.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from multiraft.errors import (
    GroupFailedError,
    GroupNotFoundError,
    GroupRemovedError,
    NodeClosedError,
    NotLeaderError,
    ProposalDroppedError,
    ProposalTimeoutError,
)
from multiraft.node import Node
from multiraft.proposals import Completions
from multiraft.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
)
from multiraft.testing.history import History
from multiraft.testing.linearizability import OpKind
from multiraft.testing.sim_cluster import SimCluster
from multiraft.testing.sim_state_machine import encode_put, encode_raw
from multiraft.testing.trace import EventTrace

__all__ = ["GroupWorkload", "KVClients", "MembershipRaces", "Placement", "RawProposals"]

#: Errors raised before a request was submitted: it certainly had no effect.
NOT_SUBMITTED = (NotLeaderError, GroupNotFoundError)
#: Errors after which a submitted request may or may not take effect.
OUTCOME_UNKNOWN = (
    ProposalTimeoutError,
    ProposalDroppedError,
    NodeClosedError,
    GroupRemovedError,
    GroupFailedError,
)


async def propose(node: Node, g: int, command: bytes, without_waiting: bool) -> object:
    """``node.propose(g, command)``, or the same through ``propose_nowait`` and a
    ``Completions`` queue when ``without_waiting`` (which refuses at once, with
    ``NotLeaderError``, when no leader is known instead of waiting for one)."""
    if not without_waiting:
        return await node.propose(g, command)
    completions = Completions()
    waiter = node.propose_nowait(g, command, completions)
    (done,) = await completions.wait()
    assert done is waiter
    return waiter.result()


class Placement:
    """Which nodes each group's clients address: its members as last learned."""

    __slots__ = ("members", "voters")

    def __init__(self) -> None:
        #: group -> voters and learners.
        self.members: dict[int, list[int]] = {}
        #: group -> voters.
        self.voters: dict[int, list[int]] = {}

    def set(self, group_id: int, voters: list[int], learners: list[int] | None = None) -> None:
        """Record the membership of ``group_id``."""
        self.voters[group_id] = sorted(voters)
        self.members[group_id] = sorted({*voters, *(learners or ())})

    def refresh(self, cluster: SimCluster, group_id: int) -> None:
        """Learn ``group_id``'s membership from its newest leader's durable state."""
        cs = cluster.membership(group_id)
        if cs is not None:
            self.set(group_id, [*cs.voters, *cs.voters_outgoing], [*cs.learners, *cs.learners_next])

    def pick(self, cluster: SimCluster, group_id: int, rng: random.Random) -> int | None:
        """A running member of ``group_id`` (or any running node), None if all are down."""
        up = [i for i in self.members.get(group_id, ()) if cluster.nodes[i].running]
        if not up:
            up = cluster.running_nodes()
        return rng.choice(up) if up else None


class GroupWorkload:
    """What every workload shares: the cluster, whom to address, which groups, pacing.

    ``mean_pause`` (None: the class's ``DEFAULT_PAUSE``) is the average time
    between two requests of one client.
    """

    DEFAULT_PAUSE = 0.05

    def __init__(
        self,
        cluster: SimCluster,
        placement: Placement,
        groups: list[int],
        *,
        seed: int,
        trace: EventTrace,
        mean_pause: float | None = None,
    ) -> None:
        self.cluster = cluster
        self.placement = placement
        self.groups = groups
        self.seed = seed
        self.trace = trace
        self.mean_pause = self.DEFAULT_PAUSE if mean_pause is None else mean_pause

    async def pause(self, rng: random.Random) -> None:
        """Wait a random time (exponential, ``mean_pause`` on average)."""
        await trio.sleep(rng.expovariate(1.0 / self.mean_pause))

    def target(self, g: int, rng: random.Random) -> tuple[int, Node] | None:
        """A running member of ``g`` to send a request to, as ``(node id, node)``."""
        node_id = self.placement.pick(self.cluster, g, rng)
        node = None if node_id is None else self.cluster.node(node_id)
        return None if node_id is None or node is None else (node_id, node)


class RawProposals(GroupWorkload):
    """Clients proposing unique raw commands to random groups through random members."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (group, index, command) of every acknowledged proposal.
        self.acknowledged: list[tuple[int, int, bytes]] = []
        self.unknown = 0
        self.failed = 0

    async def client(self, client_id: int, stop: trio.Event) -> None:
        """Propose until ``stop`` is set."""
        rng = random.Random(f"{self.seed}-raw-{client_id}")
        n = 0
        while not stop.is_set():
            await self.pause(rng)
            g = rng.choice(self.groups)
            target = self.target(g, rng)
            if target is None:
                continue
            node = target[1]
            n += 1
            command = encode_raw(b"%d.%d" % (client_id, n))
            try:
                result = await propose(node, g, command, without_waiting=n % 2 == 0)
            except NOT_SUBMITTED:
                self.failed += 1
                continue
            except OUTCOME_UNKNOWN:
                self.unknown += 1
                continue
            assert isinstance(result, int)
            self.acknowledged.append((g, result, command))
            self.trace.record("acked", f"client {client_id} group {g} index {result}")


class KVClients(GroupWorkload):
    """Clients putting and linearizably reading a few keys per group, recording a history."""

    def __init__(
        self,
        cluster: SimCluster,
        placement: Placement,
        groups: list[int],
        history: History,
        *,
        seed: int,
        keys_per_group: int = 3,
        write_ratio: float = 0.5,
        mean_pause: float = 0.05,
    ) -> None:
        super().__init__(
            cluster, placement, groups, seed=seed, trace=history.trace, mean_pause=mean_pause
        )
        self.history = history
        self.keys = [b"k%d" % i for i in range(keys_per_group)]
        self.write_ratio = write_ratio

    async def client(self, client_id: int, stop: trio.Event) -> None:
        """Operate until ``stop`` is set; one operation at a time."""
        rng = random.Random(f"{self.seed}-kv-{client_id}")
        seq = 0
        while not stop.is_set():
            await self.pause(rng)
            g = rng.choice(self.groups)
            key = rng.choice(self.keys)
            target = self.target(g, rng)
            if target is None:
                continue
            if rng.random() < self.write_ratio:
                seq += 1
                await self._put(client_id, seq, g, key, target[1])
            else:
                await self._get(client_id, g, key, *target)

    async def _put(self, client_id: int, seq: int, g: int, key: bytes, node: Node) -> None:
        value = b"%d.%d" % (client_id, seq)
        op = self.history.invoke(client_id, g, key, OpKind.PUT, value)
        try:
            await propose(node, g, encode_put(client_id, seq, key, value), seq % 2 == 0)
        except NOT_SUBMITTED as exc:
            self.history.failed(op, type(exc).__name__)
            return
        except OUTCOME_UNKNOWN as exc:
            self.history.unknown(op, type(exc).__name__)
            return
        self.history.ok(op)

    async def _get(self, client_id: int, g: int, key: bytes, node_id: int, node: Node) -> None:
        op = self.history.invoke(client_id, g, key, OpKind.GET)
        try:
            await node.read(g)
        except (*NOT_SUBMITTED, *OUTCOME_UNKNOWN) as exc:
            self.history.failed(op, type(exc).__name__)
            return
        sm = self.cluster.state_machine(node_id, g)
        if sm is None:
            self.history.failed(op, "no state machine")
            return
        self.history.ok(op, sm.get(key))


class MembershipRaces(GroupWorkload):
    """Membership changes racing faults: replace a member, remove the leader, promote a learner.

    Changes go through whichever member the placement picks (followers forward
    them). Each race is a short sequence of changes; a change that fails leaves
    the race where it is (the next race starts from the membership as it then is).
    """

    DEFAULT_PAUSE = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = random.Random(f"{self.seed}-membership")
        #: group -> nodes a race removed from it. A node id is never added back to a
        #: group it left: its replica may be collected (tombstoned) at any time later,
        #: as etcd never reuses a removed member's id.
        self.removed: dict[int, set[int]] = {}
        #: Membership changes applied, by race kind.
        self.applied: dict[str, int] = {}
        self.failed = 0

    async def run(self, stop: trio.Event) -> None:
        """Start a race now and then until ``stop`` is set."""
        rng = self.rng
        while not stop.is_set():
            await self.pause(rng)
            g = rng.choice(self.groups)
            kind = rng.choice(("replace", "remove-leader", "promote-learner", "joint-replace"))
            await self._race(kind, g)

    async def _change(self, kind: str, g: int, cc: ConfChange | ConfChangeV2) -> ConfState | None:
        target = self.target(g, self.rng)
        if target is None:
            return None
        node = target[1]
        self.trace.record("member", kind, g, repr(cc))
        try:
            cs = await node.change_membership(g, cc)
        except (*NOT_SUBMITTED, *OUTCOME_UNKNOWN) as exc:
            self.failed += 1
            self.trace.record("member", "failed", g, type(exc).__name__)
            self.placement.refresh(self.cluster, g)
            return None
        self.applied[kind] = self.applied.get(kind, 0) + 1
        self.placement.set(g, list(cs.voters), list(cs.learners))
        self.trace.record("member", "applied", g, cs.voters, cs.learners)
        return cs

    async def _race(self, kind: str, g: int) -> None:
        rng = self.rng
        self.placement.refresh(self.cluster, g)
        members = list(self.placement.voters.get(g, ()))
        hosting = self.placement.members.get(g, ())
        learners = [i for i in hosting if i not in members]
        gone = self.removed.setdefault(g, set())
        spare = [i for i in self.cluster.node_ids if i not in hosting and i not in gone]
        T = ConfChangeType
        if kind == "remove-leader":
            leader = self.cluster.checker.current_leader.get(g)
            if leader is None or leader[1] not in members or len(members) < 3:
                return
            gone.add(leader[1])
            if await self._change(kind, g, ConfChange(T.REMOVE_NODE, leader[1])) is None:
                return
            if spare:
                await self._change(kind, g, ConfChange(T.ADD_NODE, rng.choice(spare)))
        elif kind == "promote-learner":
            if learners:
                await self._change(kind, g, ConfChange(T.ADD_NODE, rng.choice(learners)))
                return
            if not spare:
                return
            new = rng.choice(spare)
            if await self._change(kind, g, ConfChange(T.ADD_LEARNER_NODE, new)) is None:
                return
            await self._change(kind, g, ConfChange(T.ADD_NODE, new))
        elif kind == "replace":
            if not spare or len(members) < 3:
                return
            new, old = rng.choice(spare), rng.choice(members)
            if await self._change(kind, g, ConfChange(T.ADD_LEARNER_NODE, new)) is None:
                return
            if await self._change(kind, g, ConfChange(T.ADD_NODE, new)) is None:
                return
            gone.add(old)
            await self._change(kind, g, ConfChange(T.REMOVE_NODE, old))
        else:
            if not spare or len(members) < 3:
                return
            new, old = rng.choice(spare), rng.choice(members)
            gone.add(old)
            changes = (
                ConfChangeSingle(T.ADD_NODE, new),
                ConfChangeSingle(T.REMOVE_NODE, old),
            )
            await self._change(kind, g, ConfChangeV2(changes))
