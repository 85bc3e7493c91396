"""The fault schedule: one seeded generator decides every fault, its target and its timing.

Each seed draws a weight per fault kind (so seeds differ in character: one is
mostly partitions, another mostly crashes), then the schedule runs a number of
steps; each step picks a kind by weight, applies it and lets simulated time
pass. Faults stay until a ``heal`` step or :meth:`FaultSchedule.heal_all` lifts
them. The kinds:

* network weather (memory network): ``drop``, ``delay``, ``duplicate``, ``reorder``;
* cuts (:class:`~multiraft.testing.sim_network.LinkFaults`): ``partition``
  (two sides), ``asymmetric`` (one direction of a node's links), ``bridge``
  (two sides that only reach each other through one node), ``isolate`` (one
  node), ``isolate-leaders`` (the node leading the most groups: many groups lose
  their leader at once);
* ``crash``: a node stops at once (losing a write in progress) and restarts
  from its durable state a little later, with a new clock rate;
* ``slow-disk`` (delayed syncs) and ``slow-apply`` (a slow state machine);
* append trimming: ``short-appends`` and ``stale-appends``;
* ``leader-churn``: a scenario of several rounds, built to reach the
  situation of figure 8 of the Raft paper. Appends carry only entries older
  than their sender's term (``stale-appends`` on every link) and each round
  isolates the node leading the most groups while reconnecting the one isolated
  before. A group then sees a leader append an entry that never leaves it, a
  second leader do the same at the same index in a later term, the first come
  back in a third term and copy its old entry, and only that one, to a
  majority: counting replicas would commit it, and the next round lets the
  second leader overwrite it.

Clock rates differ too: each incarnation of a node ticks at a rate drawn at
its start (``clock-skew`` counts the incarnations that run fast or slow), until
:meth:`FaultSchedule.heal_all` restarts every skewed node at the normal rate
before the liveness check.
"""

from __future__ import annotations

import random
from collections import Counter

import trio

from multiraft.testing.sim_cluster import SimCluster
from multiraft.testing.sim_network import LinkFaults
from multiraft.testing.trace import EventTrace

__all__ = ["FAULT_KINDS", "FaultSchedule", "draw_weights"]

#: Relative frequency of each fault kind: the weight of a seed is drawn from this range.
WEIGHT_RANGES: dict[str, tuple[float, float]] = {
    "drop": (0.0, 2.0),
    "delay": (0.0, 2.0),
    "duplicate": (0.0, 1.5),
    "reorder": (0.0, 1.5),
    "partition": (0.0, 3.0),
    "asymmetric": (0.0, 2.0),
    "bridge": (0.0, 2.0),
    "isolate": (0.0, 2.0),
    "isolate-leaders": (0.5, 3.0),
    "crash": (0.0, 3.0),
    "slow-disk": (0.0, 1.5),
    "slow-apply": (0.0, 1.5),
    "short-appends": (0.0, 1.5),
    "stale-appends": (0.0, 1.5),
    "leader-churn": (0.0, 3.0),
    "heal": (1.0, 3.0),
}
FAULT_KINDS: tuple[str, ...] = (*WEIGHT_RANGES, "clock-skew")

#: Base link latency of the memory network (seconds), drawn per seed up to this.
BASE_DELAY = 0.01


def draw_weights(rng: random.Random, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """One seed's weight per fault kind (``overrides`` replace drawn weights)."""
    weights = {kind: rng.uniform(low, high) for kind, (low, high) in WEIGHT_RANGES.items()}
    if overrides:
        for kind, w in overrides.items():
            if kind not in WEIGHT_RANGES:
                raise ValueError(f"unknown fault kind {kind!r}")
            weights[kind] = w
    return weights


class FaultSchedule:
    """Applies one seed's faults to a :class:`SimCluster`, step by step."""

    def __init__(
        self,
        cluster: SimCluster,
        faults: LinkFaults,
        rng: random.Random,
        trace: EventTrace,
        weights: dict[str, float],
        *,
        step_seconds: tuple[float, float] = (0.5, 3.0),
        skew_rate: float = 0.3,
        blocking_apply_rate: float = 0.3,
    ) -> None:
        self.cluster = cluster
        self.network = cluster.network
        self.faults = faults
        self.rng = rng
        self.trace = trace
        self.weights = weights
        self.step_seconds = step_seconds
        self.skew_rate = skew_rate
        self.blocking_apply_rate = blocking_apply_rate
        self.counts: Counter[str] = Counter()
        #: (time, description) of every fault applied, in order.
        self.log: list[tuple[float, str]] = []
        self._kinds = [k for k, w in weights.items() if w > 0]
        self._weights = [weights[k] for k in self._kinds]
        self._isolated_leader: int | None = None
        self._restarts: list[int] = []
        self.base_delay = rng.uniform(0.0005, BASE_DELAY)
        self.network.set_delay(self.base_delay / 2, self.base_delay)

    # -------------------------------------------------------------- helpers

    def _note(self, kind: str, what: str) -> None:
        self.counts[kind] += 1
        self.log.append((trio.current_time(), f"{kind}: {what}"))
        self.trace.record("fault", kind, what)

    def prepare_incarnation(self, node_id: int, *, skewed_clock: bool = True) -> None:
        """Draw the clock rate and apply mode of ``node_id``'s next incarnation.

        Without ``skewed_clock`` the clock runs at the normal rate whatever the
        draw (the draws are made all the same, so the rest of the seed's random
        sequence does not move).
        """
        sn = self.cluster.nodes[node_id]
        rng = self.rng
        sn.tick_scale = rng.uniform(0.6, 1.6) if rng.random() < self.skew_rate else 1.0
        sn.blocking_apply = rng.random() < self.blocking_apply_rate
        if not skewed_clock:
            sn.tick_scale = 1.0
        if sn.tick_scale != 1.0:
            self._note("clock-skew", f"node {node_id} ticks at x{sn.tick_scale:.2f}")

    async def start_node(self, node_id: int, *, skewed_clock: bool = True) -> None:
        """Start ``node_id`` with a freshly drawn clock rate (the normal one without
        ``skewed_clock``)."""
        self.prepare_incarnation(node_id, skewed_clock=skewed_clock)
        await self.cluster.start(node_id)

    def _others(self, node: int) -> list[int]:
        return [i for i in self.cluster.node_ids if i != node]

    def _leader_counts(self) -> Counter[int]:
        counts: Counter[int] = Counter()
        for _, node in self.cluster.checker.current_leader.values():
            counts[node] += 1
        return counts

    def _top_leader(self, exclude: int | None = None) -> int:
        counts = self._leader_counts()
        candidates = [i for i in self.cluster.node_ids if i != exclude]
        return max(candidates, key=lambda i: (counts[i], -i))

    # ---------------------------------------------------------------- steps

    async def run(self, steps: int, nursery: trio.Nursery) -> None:
        """Run ``steps`` fault steps; crashed nodes restart from tasks in ``nursery``."""
        for _ in range(steps):
            kind = self.rng.choices(self._kinds, self._weights)[0]
            if kind == "leader-churn":
                await self._leader_churn()
            else:
                await self._apply(kind, nursery)
                await trio.sleep(self.rng.uniform(*self.step_seconds))

    async def _apply(self, kind: str, nursery: trio.Nursery) -> None:
        rng = self.rng
        net = self.network
        nodes = self.cluster.node_ids
        faults = self.faults
        if kind == "drop":
            p = rng.uniform(0.02, 0.3)
            net.set_drop_rate(p)
            self._note(kind, f"lose {p:.0%} of frames")
        elif kind == "delay":
            high = rng.uniform(0.02, 0.4)
            net.set_delay(self.base_delay / 2, high)
            self._note(kind, f"latency up to {high * 1000:.0f} ms")
        elif kind == "duplicate":
            p = rng.uniform(0.05, 0.4)
            net.set_duplicate_rate(p)
            self._note(kind, f"duplicate {p:.0%} of frames")
        elif kind == "reorder":
            p, window = rng.uniform(0.1, 0.6), rng.uniform(0.01, 0.3)
            net.set_reorder(p, window)
            self._note(kind, f"hold back {p:.0%} of frames up to {window * 1000:.0f} ms")
        elif kind == "partition":
            faults.cut.clear()
            shuffled = rng.sample(nodes, len(nodes))
            k = rng.randrange(1, len(nodes))
            side_a, side_b = sorted(shuffled[:k]), sorted(shuffled[k:])
            for a in side_a:
                for b in side_b:
                    faults.cut_both(a, b)
            self._note(kind, f"{side_a} | {side_b}")
        elif kind == "asymmetric":
            node = rng.choice(nodes)
            outbound = rng.random() < 0.5
            for other in self._others(node):
                faults.cut.add((node, other) if outbound else (other, node))
            self._note(kind, f"node {node} {'cannot send' if outbound else 'cannot receive'}")
        elif kind == "bridge":
            faults.cut.clear()
            bridge = rng.choice(nodes)
            rest = rng.sample(self._others(bridge), len(nodes) - 1)
            k = max(1, len(rest) // 2)
            for a in rest[:k]:
                for b in rest[k:]:
                    faults.cut_both(a, b)
            self._note(kind, f"{sorted(rest[:k])} and {sorted(rest[k:])} meet only at {bridge}")
        elif kind == "isolate":
            node = rng.choice(nodes)
            faults.isolate(node, nodes)
            self._note(kind, f"node {node}")
        elif kind == "isolate-leaders":
            self._isolate_top_leader(kind)
        elif kind == "crash":
            await self._crash(nursery)
        elif kind == "slow-disk":
            sn = self.cluster.nodes[rng.choice(nodes)]
            sn.disk.slow_seconds = rng.uniform(0.05, 0.6)
            self._note(kind, f"node {sn.node_id} syncs take ~{sn.disk.slow_seconds * 1000:.0f} ms")
        elif kind == "slow-apply":
            sn = self.cluster.nodes[rng.choice(nodes)]
            sn.slowness.apply_seconds = rng.uniform(0.005, 0.1)
            mode = "" if sn.blocking_apply else " (its incarnation applies inline: no effect)"
            self._note(
                kind,
                f"node {sn.node_id} applies in ~{sn.slowness.apply_seconds * 1000:.0f} ms{mode}",
            )
        elif kind == "short-appends":
            faults.short_append_rate = rng.uniform(0.2, 0.9)
            self._note(kind, f"{faults.short_append_rate:.0%} of appends cut short")
        elif kind == "stale-appends":
            links = [(a, b) for a in nodes for b in nodes if a != b]
            chosen = [link for link in links if rng.random() < 0.7] or [rng.choice(links)]
            faults.stale_only.update(chosen)
            self._note(kind, f"{len(chosen)} links carry only entries older than the sender's term")
        elif kind == "heal":
            self.heal_network()
            self._note(kind, "network, disks and state machines back to normal")
        else:
            raise ValueError(f"unknown fault kind {kind!r}")

    def _isolate_top_leader(self, kind: str) -> None:
        nodes = self.cluster.node_ids
        previous = self._isolated_leader
        if previous is not None:
            for other in self._others(previous):
                self.faults.cut.discard((previous, other))
                self.faults.cut.discard((other, previous))
        node = self._top_leader(exclude=previous)
        self._isolated_leader = node
        self.faults.isolate(node, nodes)
        led = self._leader_counts()[node]
        self._note(kind, f"node {node} (leading {led} groups) cut off")

    async def _crash(self, nursery: trio.Nursery) -> None:
        running = self.cluster.running_nodes()
        if not running:
            return
        node = self.rng.choice(running)
        down_for = self.rng.uniform(0.2, 4.0)
        self._note("crash", f"node {node}, restarting after {down_for:.1f} s")
        await self.cluster.crash(node)
        nursery.start_soon(self._restart_later, node, down_for)

    async def _restart_later(self, node: int, delay: float) -> None:
        await trio.sleep(delay)
        if not self.cluster.nodes[node].running:
            await self.start_node(node)

    async def _leader_churn(self) -> None:
        rng = self.rng
        rounds = rng.randint(3, 6)
        nodes = self.cluster.node_ids
        self.faults.stale_only.update((a, b) for a in nodes for b in nodes if a != b)
        self._note("leader-churn", f"{rounds} rounds, appends carry only older terms")
        for _ in range(rounds):
            self._isolate_top_leader("isolate-leaders")
            await trio.sleep(rng.uniform(2.0, 4.0))
        self.faults.stale_only.clear()

    # ----------------------------------------------------------------- heal

    def heal_network(self) -> None:
        """Lift cuts, trimming, network weather, slow disks and slow state machines."""
        self.faults.clear()
        self._isolated_leader = None
        net = self.network
        net.set_drop_rate(0.0)
        net.set_duplicate_rate(0.0)
        net.set_reorder(0.0, 0.0)
        net.set_delay(self.base_delay / 2, self.base_delay)
        for sn in self.cluster.nodes.values():
            sn.disk.slow_seconds = 0.0
            sn.slowness.apply_seconds = 0.0

    async def heal_all(self) -> None:
        """Heal everything and start every node that is down, every clock at the normal rate.

        A skewed clock is a fault too, and liveness rests on comparable
        election timeouts: without PreVote, a node whose clock runs fast and
        whose log is behind campaigns before the others time out, each time
        moving them to its term and restarting their timers, and it cannot win
        (etcd raft behaves the same). Seed 12033 (``--groups 30 --steps 15``)
        kept a group from electing anyone for the whole liveness window that
        way. So a running node with a skewed clock is restarted (as a crash:
        what it wrote without a sync may be lost) at the normal rate.
        """
        self.heal_network()
        cluster = self.cluster
        for i in cluster.node_ids:
            sn = cluster.nodes[i]
            if sn.running and sn.tick_scale != 1.0:
                self.trace.record("fault", "clock", f"node {i} restarts at the normal clock rate")
                await cluster.crash(i)
            if not sn.running:
                await self.start_node(i, skewed_clock=False)
        self.trace.record("fault", "heal-all", "every fault lifted, every node up")
