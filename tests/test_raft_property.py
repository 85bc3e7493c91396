"""Randomized simulation of one raft group, checking Raft's safety properties at every step.

Three to five voters (plus two spare nodes that membership changes may add) run as
RawNodes over MemoryStorage and follow the Ready contract: persist the snapshot,
entries and hard state, then hand the messages to the network, apply the committed
entries (conf changes included), and advance. The network drops, duplicates,
reorders and partitions messages and cuts appends short (a prefix of their entries
arrives); nodes tick, propose, change membership, compact their logs into snapshots
and restart from what they persisted.

After every step the simulation checks:

* election safety: at most one leader per term;
* log matching: an entry is identified by its index and term, so every persisted
  entry with the same (index, term) has the same content and the same previous term
  (by induction, two persisted logs agreeing on an entry agree on everything before);
* leader completeness: an entry committed in term T is in the log of every leader of
  a term after T;
* state machine safety: every node applies the same entry at each index, from index
  1 without gaps, so the applied sequences are prefixes of each other.

At the end the run settles: no more ticks, proposals, partitions, losses or
reordering, but messages are still duplicated and appends still cut short. Raft
then sends only in answer to something, so the traffic must die down within
``SETTLE_DELIVERIES`` deliveries; a leader answering stale or duplicated responses
with fresh appends (or snapshots) would keep it going forever, a message storm.

A failure names its seed and the command that replays it alone:
``MULTIRAFT_SEED=<seed> python3 -m pytest tests/test_raft_property.py``.
``MULTIRAFT_SEEDS`` (number of seeds) and ``MULTIRAFT_STEPS`` (steps per seed) scale
the run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
from collections import Counter, deque
from typing import Any, NoReturn

import attrs
import msgpack
import pytest

from multiraft.raft import (
    NO_LIMIT,
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    Config,
    ConfState,
    EntryType,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    SnapshotStatus,
    StateType,
    StepPeerNotFoundError,
)
from multiraft.raft.types import Entry
from storage import MemoryStorage

CCT = ConfChangeType
SPARE_NODES = 2
MIN_VOTERS = 3
#: Above this many messages in flight the oldest are lost (a bounded network buffer).
MAX_IN_FLIGHT = 300
#: Deliveries allowed for the traffic to die down once the run settles.
SETTLE_DELIVERIES = 200 * MAX_IN_FLIGHT

#: Relative frequency of each kind of event, drawn per seed from these ranges.
EVENT_WEIGHT_RANGES = {
    "deliver": (30.0, 50.0),
    "tick_all": (5.0, 15.0),
    "tick_one": (2.0, 8.0),
    "ready": (10.0, 25.0),
    "ready_all": (2.0, 8.0),
    "propose": (4.0, 15.0),
    "membership": (0.5, 3.0),
    "partition": (1.0, 6.0),
    "compact": (0.5, 3.0),
    "restart": (0.2, 2.0),
}
EVENT_KINDS = tuple(EVENT_WEIGHT_RANGES)

#: (index, term, type, data) of one applied entry.
Applied = tuple[int, int, int, bytes]


def seeds_to_run() -> list[int]:
    """One seed from MULTIRAFT_SEED, else MULTIRAFT_SEEDS seeds from 0."""
    one = os.environ.get("MULTIRAFT_SEED")
    if one is not None:
        return [int(one)]
    return list(range(int(os.environ.get("MULTIRAFT_SEEDS", "100"))))


STEPS = int(os.environ.get("MULTIRAFT_STEPS", "2500"))


class SafetyViolation(AssertionError):
    """A property did not hold (or the core raised) in a seeded run."""


class SimNode:
    """One member: its storage (survives restarts), its RawNode and its applied state."""

    __slots__ = ("applied", "conf_state", "config_kw", "id", "rn", "storage")

    def __init__(self, node_id: int, voters: list[int], config_kw: dict[str, Any]) -> None:
        self.id = node_id
        self.storage = MemoryStorage()
        self.conf_state = ConfState()
        self.config_kw = config_kw
        self.applied: list[Applied] = []
        self.rn = self._new_rawnode()
        if node_id in voters:
            # The initial membership is in the log (committed ADD_NODE entries), so a
            # node added later learns it by replaying the log or from a snapshot.
            self.rn.bootstrap(voters)

    def _new_rawnode(self) -> RawNode:
        return RawNode(
            Config(id=self.id, storage=self.storage, applied=self.applied_index(), **self.config_kw)
        )

    def restart(self) -> None:
        """Crash and come back from storage: unpersisted entries and state are lost."""
        self.rn = self._new_rawnode()

    def applied_index(self) -> int:
        return self.applied[-1][0] if self.applied else 0


class Simulation:
    """A seeded run of one group under random faults, with the safety checks."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        n_voters = rng.randint(3, 5)
        voters = list(range(1, n_voters + 1))
        self.ids = list(range(1, n_voters + SPARE_NODES + 1))
        base: dict[str, Any] = {
            "election_tick": 10,
            "heartbeat_tick": rng.choice([1, 2, 3]),
            "pre_vote": rng.random() < 0.5,
            "check_quorum": rng.random() < 0.5,
            "max_size_per_msg": rng.choice([0, 64, NO_LIMIT]),
            "max_inflight_msgs": rng.choice([1, 2, 4, 256]),
            "step_down_on_removal": rng.random() < 0.5,
        }
        self.settings = dict(base, voters=n_voters)
        # Each seed draws its own mix of events: some are partition-heavy, some
        # proposal-heavy, some restart often.
        weights = [rng.uniform(lo, hi) for lo, hi in EVENT_WEIGHT_RANGES.values()]
        self.event_weights = list(itertools.accumulate(weights))
        self.nodes = {
            pid: SimNode(pid, voters, dict(base, seed=rng.getrandbits(32))) for pid in self.ids
        }
        self.in_flight: list[Message] = []
        self.side: dict[int, bool] | None = None
        self.step_no = 0
        self.trace: deque[str] = deque(maxlen=40)
        self.proposals = 0
        # Safety bookkeeping.
        self.leader_of_term: dict[int, int] = {}
        self.entry_ids: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        self.committed: dict[int, tuple[int, int, bytes]] = {}
        self.commit_term: dict[int, int] = {}
        self.max_committed = 0
        self.fresh_commits: list[int] = []
        self.complete_leaders: set[int] = set()
        for node in self.nodes.values():
            self.handle_ready(node)  # persist the bootstrap entries

    # ------------------------------------------------------------ reporting

    def fail(self, what: str) -> NoReturn:
        trace = "\n  ".join(self.trace)
        raise SafetyViolation(
            f"seed {self.seed}, step {self.step_no}: {what}\n"
            f"settings: {self.settings}\n"
            f"last events:\n  {trace}\n"
            f"replay: MULTIRAFT_SEED={self.seed} python3 -m pytest tests/test_raft_property.py -q"
        )

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.fail(what)

    # ----------------------------------------------------------------- run

    def run(self, steps: int) -> None:
        try:
            for self.step_no in range(1, steps + 1):
                self.random_event()
                self.check_after_step()
            self.settle()
            self.final_checks()
        except SafetyViolation:
            raise
        except Exception as err:
            # Anything the core raises is a failure too, reported with the replay command.
            self.fail(f"{type(err).__name__}: {err}")

    def random_event(self) -> None:
        kind = self.rng.choices(EVENT_KINDS, cum_weights=self.event_weights)[0]
        getattr(self, f"on_{kind}")()

    def on_deliver(self) -> None:
        for _ in range(self.rng.randint(1, 6)):
            self.deliver_one()

    def on_tick_all(self) -> None:
        self.event("tick all")
        for node in self.nodes.values():
            node.rn.tick()

    def on_tick_one(self) -> None:
        node = self.random_node()
        self.event(f"tick {node.id}")
        node.rn.tick()

    def on_ready(self) -> None:
        self.handle_ready(self.random_node())

    def on_ready_all(self) -> None:
        for node in self.nodes.values():
            self.handle_ready(node)

    def on_propose(self) -> None:
        self.propose(self.random_node())

    def on_membership(self) -> None:
        self.change_membership()

    def on_partition(self) -> None:
        self.repartition()

    def on_compact(self) -> None:
        self.compact(self.random_node())

    def on_restart(self) -> None:
        node = self.random_node()
        self.event(f"restart {node.id}")
        node.restart()

    def random_node(self) -> SimNode:
        return self.nodes[self.rng.choice(self.ids)]

    def event(self, text: str) -> None:
        self.trace.append(f"{self.step_no}: {text}")

    # ------------------------------------------------------------- network

    def deliver_one(self, settling: bool = False) -> None:
        if not self.in_flight:
            return
        rng = self.rng
        # Favour older messages so that the queue drains, but pick any: reordering.
        # Settling, the network delivers in order and loses nothing.
        i = 0 if settling else int(rng.random() ** 2 * len(self.in_flight))
        m = self.in_flight.pop(i)
        sender = self.nodes[m.from_].rn
        fate = rng.random()
        if (fate < 0.08 and not settling) or self.cut(m.from_, m.to):
            self.event(f"drop {m.type.name} {m.from_}->{m.to}")
            # The transport tells the sender what it knows, as a real one would.
            if m.type == MessageType.SNAP:
                sender.report_snapshot(m.to, SnapshotStatus.FAILURE)
            elif rng.random() < 0.3:
                sender.report_unreachable(m.to)
            return
        if 0.08 <= fate < 0.13:
            self.in_flight.append(m)  # delivered now and again later
        elif 0.13 <= fate < 0.16 and m.type == MessageType.APP and m.entries:
            # Only a prefix of the entries arrives, and the answer says so.
            m = attrs.evolve(m, entries=m.entries[: rng.randrange(len(m.entries))])
        self.event(
            f"deliver {m.type.name} {m.from_}->{m.to} t{m.term} i{m.index} {len(m.entries)} ents"
        )
        node = self.nodes[m.to]
        with contextlib.suppress(ProposalDroppedError, StepPeerNotFoundError):
            node.rn.step(attrs.evolve(m))
        if m.type == MessageType.SNAP:
            sender.report_snapshot(m.to, SnapshotStatus.FINISH)
        if rng.random() < 0.6:
            # Usually the receiver handles its Ready soon; sometimes inputs pile up first.
            self.handle_ready(node)

    def settle(self) -> None:
        """Heal and stop every source of traffic; what is in flight must die down."""
        self.side = None
        self.event("settle: no more ticks, proposals, losses or reordering")
        for _ in range(SETTLE_DELIVERIES):
            if not self.in_flight:
                for node in self.nodes.values():
                    self.handle_ready(node)
                if not self.in_flight:
                    return
            self.deliver_one(settling=True)
            self.check_after_step()
        for node in self.nodes.values():
            self.handle_ready(node)
        kinds = Counter(
            f"{m.type.name} {m.from_}->{m.to} i{m.index}{' reject' if m.reject else ''}"
            for m in self.in_flight
        )
        self.fail(
            f"traffic did not die down after {SETTLE_DELIVERIES} deliveries without ticks or "
            f"proposals; in flight: {kinds.most_common(6)}"
        )

    def cut(self, a: int, b: int) -> bool:
        return self.side is not None and self.side[a] != self.side[b]

    def repartition(self) -> None:
        rng = self.rng
        if self.side is not None and rng.random() < 0.5:
            self.side = None
            self.event("heal")
            return
        minority = set(rng.sample(self.ids, rng.randint(1, len(self.ids) // 2)))
        self.side = {pid: pid in minority for pid in self.ids}
        self.event(f"partition {sorted(minority)}")

    # ----------------------------------------------------- the application

    def handle_ready(self, node: SimNode) -> None:
        rn = node.rn
        if not rn.has_ready():
            return
        rd = rn.ready()
        self.event(
            f"ready {node.id}: {len(rd.entries)} ents, {len(rd.committed_entries)} committed, "
            f"{len(rd.messages)} msgs, snap={rd.snapshot is not None}"
        )
        st = node.storage
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            st.apply_snapshot(rd.snapshot)
            self.install_snapshot_state(node, rd.snapshot.data, rd.snapshot.metadata.index)
            node.conf_state = rd.snapshot.metadata.conf_state
        if rd.entries:
            st.append(rd.entries)
            self.check_persisted(node, rd.entries)
        if rd.hard_state is not None:
            st.set_hard_state(rd.hard_state)
        self.in_flight.extend(rd.messages)
        if len(self.in_flight) > MAX_IN_FLIGHT:
            del self.in_flight[: len(self.in_flight) - MAX_IN_FLIGHT]
        if rd.committed_entries:
            self.record_commits()
        for e in rd.committed_entries:
            self.apply(node, e)
        rn.advance(rd)

    def apply(self, node: SimNode, e: Entry) -> None:
        self.check(
            e.index == node.applied_index() + 1,
            f"node {node.id} applies index {e.index} after {node.applied_index()}",
        )
        want = self.committed.get(e.index)
        self.check(
            want == (e.term, int(e.type), e.data),
            f"node {node.id} applies {e} but the committed entry at {e.index} is {want}",
        )
        node.applied.append((e.index, e.term, int(e.type), e.data))
        if e.type == EntryType.CONF_CHANGE:
            node.conf_state = node.rn.apply_conf_change(ConfChange.from_bytes(e.data))
            node.storage.set_conf_state(node.conf_state)
        elif e.type == EntryType.CONF_CHANGE_V2:
            node.conf_state = node.rn.apply_conf_change(ConfChangeV2.from_bytes(e.data))
            node.storage.set_conf_state(node.conf_state)

    def install_snapshot_state(self, node: SimNode, data: bytes, index: int) -> None:
        applied = [tuple(a) for a in msgpack.unpackb(data)]
        self.check(
            (applied[-1][0] if applied else 0) == index,
            f"snapshot at {index} holds state up to {applied[-1][0] if applied else 0}",
        )
        for pos, a in enumerate(applied):
            want = self.committed.get(a[0])
            self.check(
                a[0] == pos + 1 and want == tuple(a[1:]),
                f"node {node.id} restores {a} from a snapshot; committed at {a[0]} is {want}",
            )
        node.applied = applied

    def propose(self, node: SimNode) -> None:
        self.proposals += 1
        data = f"p{self.proposals}".encode()
        self.event(f"propose {data!r} at {node.id}")
        with contextlib.suppress(ProposalDroppedError):
            node.rn.propose(data)

    def compact(self, node: SimNode) -> None:
        st = node.storage
        index = node.applied_index()
        if index <= st.snapshot().metadata.index:
            return
        data = msgpack.packb(node.applied)
        st.create_snapshot(index, node.conf_state, data)
        # Sometimes keep a short tail of entries, as real applications do.
        compact_to = max(index - self.rng.randint(0, 3), st.first_index())
        if compact_to > st.first_index() - 1:
            st.compact(compact_to)
        self.event(f"compact {node.id} snapshot {index} log from {st.first_index()}")

    def change_membership(self) -> None:
        leaders = [n for n in self.nodes.values() if n.rn.raft.state == StateType.LEADER]
        if not leaders:
            return
        leader = max(leaders, key=lambda n: n.rn.raft.term)
        r = leader.rn.raft
        cfg = r.trk.config
        if cfg.voters.outgoing.ids():
            return  # joint: the leader leaves it on its own
        voters = sorted(cfg.voters.incoming.ids())
        learners = sorted(cfg.learners)
        outsiders = [pid for pid in self.ids if pid not in voters and pid not in learners]
        rng = self.rng
        options: list[ConfChange | ConfChangeV2] = []
        options += [ConfChange(CCT.ADD_LEARNER_NODE, pid) for pid in outsiders]
        options += [ConfChange(CCT.ADD_NODE, pid) for pid in learners]
        options += [ConfChange(CCT.REMOVE_NODE, pid) for pid in learners]
        if len(voters) > MIN_VOTERS:
            options += [ConfChange(CCT.REMOVE_NODE, pid) for pid in voters]
        if learners and len(voters) >= MIN_VOTERS:
            # Swap a learner in for a voter through joint consensus.
            incoming, outgoing = rng.choice(learners), rng.choice(voters)
            options.append(
                ConfChangeV2(
                    changes=(
                        ConfChangeSingle(CCT.ADD_NODE, incoming),
                        ConfChangeSingle(CCT.REMOVE_NODE, outgoing),
                    ),
                    transition=rng.choice(
                        [ConfChangeTransition.AUTO, ConfChangeTransition.IMPLICIT]
                    ),
                )
            )
        if not options:
            return
        change = rng.choice(options)
        self.event(f"conf change at {leader.id} (term {r.term}): {change}")
        with contextlib.suppress(ProposalDroppedError):
            leader.rn.propose_conf_change(change)

    # --------------------------------------------------------------- checks

    def check_persisted(self, node: SimNode, entries: list[Entry]) -> None:
        """Log matching: one (index, term) always names the same entry after the same term."""
        st = node.storage
        first = st.first_index()
        for e in entries:
            if e.index < first:
                continue  # already covered by this node's snapshot
            key = (e.index, e.term)
            seen = (int(e.type), e.data, st.term(e.index - 1))
            known = self.entry_ids.setdefault(key, seen)
            self.check(
                known == seen,
                f"node {node.id} persisted entry {key} as (type, data, prev term) {seen}, "
                f"but it was persisted elsewhere as {known}",
            )

    def record_commits(self) -> None:
        """Note entries newly known committed, with the term of the node that first knew."""
        for node in self.nodes.values():
            log = node.rn.raft.raft_log
            if log.committed <= self.max_committed:
                continue
            lo = self.max_committed + 1
            self.check(
                lo >= log.first_index(),
                f"node {node.id} committed to {log.committed} past the known commit "
                f"{self.max_committed} without holding the entries",
            )
            for e in log.slice(lo, log.committed + 1, NO_LIMIT):
                self.committed[e.index] = (e.term, int(e.type), e.data)
                self.commit_term[e.index] = node.rn.raft.term
                self.fresh_commits.append(e.index)
            self.max_committed = log.committed

    def check_after_step(self) -> None:
        """Election safety and leader completeness for the leaders after this step."""
        self.record_commits()
        fresh, self.fresh_commits = self.fresh_commits, []
        for node in self.nodes.values():
            r = node.rn.raft
            if r.state != StateType.LEADER:
                continue
            other = self.leader_of_term.setdefault(r.term, node.id)
            self.check(other == node.id, f"nodes {other} and {node.id} both lead term {r.term}")
            if r.term in self.complete_leaders:
                self.check_leader_holds(node, fresh)
            else:
                # A new leader: it must hold everything committed in earlier terms.
                self.complete_leaders.add(r.term)
                self.check_leader_holds(node, list(self.committed))

    def check_leader_holds(self, node: SimNode, indexes: list[int]) -> None:
        """Leader completeness: the leader holds each of ``indexes`` committed before its term."""
        r = node.rn.raft
        log = r.raft_log
        floor = log.first_index() - 1
        for i in indexes:
            if self.commit_term[i] >= r.term or i < floor:
                continue
            want = self.committed[i][0]
            self.check(
                log.match_term(i, want),
                f"leader {node.id} of term {r.term} lacks entry {i} (term {want}) committed "
                f"in term {self.commit_term[i]}",
            )

    def final_checks(self) -> None:
        """Pairwise: persisted logs match where they overlap; applied sequences are prefixes."""
        nodes = list(self.nodes.values())
        for a in nodes:
            for b in nodes:
                if a.id >= b.id:
                    continue
                n = min(len(a.applied), len(b.applied))
                self.check(
                    a.applied[:n] == b.applied[:n],
                    f"applied sequences of {a.id} and {b.id} diverge",
                )
                self.check_logs_match(a.storage, b.storage, a.id, b.id)

    def check_logs_match(self, a: MemoryStorage, b: MemoryStorage, ida: int, idb: int) -> None:
        lo = max(a.first_index(), b.first_index())
        hi = min(a.last_index(), b.last_index())
        if hi < lo:
            return
        ea = a.entries(lo, hi + 1, NO_LIMIT)
        eb = b.entries(lo, hi + 1, NO_LIMIT)
        agreed = [x.index for x, y in zip(ea, eb, strict=True) if x.term == y.term]
        if not agreed:
            return
        top = agreed[-1] - lo + 1
        self.check(
            ea[:top] == eb[:top],
            f"logs of {ida} and {idb} agree at index {agreed[-1]} but differ before it",
        )


@pytest.mark.parametrize("seed", seeds_to_run())
def test_raft_safety_under_random_faults(seed: int) -> None:
    sim = Simulation(seed)
    sim.run(STEPS)
    # The run must have exercised the group: leaders elected, entries committed past the
    # bootstrap configuration.
    assert sim.leader_of_term, f"seed {seed}: no leader was ever elected"
    bootstrap = sim.settings["voters"]
    assert sim.max_committed > bootstrap, f"seed {seed}: nothing committed after bootstrap"
