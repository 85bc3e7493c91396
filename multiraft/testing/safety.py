"""Raft's safety properties, checked continuously from what simulated nodes do.

The checker sits on the simulator's side of the coordinator's ports and sees
three streams, each as it happens:

* every frame a node sends (:meth:`SafetyChecker.on_frame`): appends, snapshots
  and heartbeats come only from a leader and carry its term, so they name the
  leader of ``(group, term)``;
* every batch a node makes durable (:meth:`SafetyChecker.on_write`): the
  entries and hard states each replica persisted;
* every command a replica applies (:meth:`SafetyChecker.on_apply`), with the
  replica's running hash of everything it applied so far.

From them it checks, per group:

* **election safety**: at most one node leads a term;
* **log matching**: every persisted entry with a given (index, term) has the
  same type and data, and the same term before it, on every replica and at all
  times (so two logs agreeing on an entry agree on everything before it);
* **no committed entry lost or changed**: when a replica's durable commit index
  moves, the entries it now calls committed must equal whatever any replica
  committed at those indexes before; no replica may persist a different entry
  at a committed index later, and no commit index moves backwards;
* **leader completeness**: a node that starts leading term T holds every entry
  that was seen committed in an earlier term (checked on the newest such entry;
  log matching covers the ones before it);
* **state machine safety**: a replica applies exactly the command committed at
  each index (checked when a durable commit index first covers it, which may
  come after the apply: commit indexes are written without a sync, and a
  leader applies what its followers' answers committed before its own write),
  in increasing index order, and its running
  hash at each index equals every other replica's there (identical applied
  sequences, prefix by prefix).

A violation is recorded with the simulated time and handed to ``on_violation``
(the simulator stops the run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from multiraft.frames import Frame
from multiraft.ports import GroupStorage, WriteBatch
from multiraft.proposals import HEADER_SIZE
from multiraft.raft.errors import CompactedError, UnavailableError
from multiraft.raft.storage import NO_LIMIT
from multiraft.raft.types import Entry, EntryType, MessageType
from multiraft.testing.sim_engine import SimLogEngine
from multiraft.testing.trace import EventTrace

__all__ = ["SafetyChecker", "Violation"]


def _frame_summary(frame: Frame) -> str:
    """The most frequent kinds of message in a frame, for a storm report."""
    counts: dict[tuple[int, str, int, bool], int] = {}
    for gm in frame.messages:
        m = gm.message
        key = (gm.group_id, m.type.name, m.index, m.reject)
        counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(
        f"{n} x group {g} {t}{' reject' if r else ''} index {i}" for (g, t, i, r), n in top
    )


_LEADER_MESSAGES = (MessageType.APP, MessageType.SNAP)
_NORMAL = EntryType.NORMAL
#: Term recorded for an entry before it when that entry is compacted away.
_UNKNOWN = -1


@attrs.frozen(slots=True)
class Violation:
    """A safety, liveness or linearizability property that did not hold."""

    kind: str
    detail: str
    at: float
    group: int | None = None

    def describe(self) -> str:
        """One line: time, kind, group and detail."""
        where = "" if self.group is None else f" group {self.group}:"
        return f"[t={self.at:.3f}] {self.kind}:{where} {self.detail}"


class SafetyChecker:
    """Checks Raft's safety properties on every frame, durable write and apply."""

    def __init__(
        self,
        trace: EventTrace,
        *,
        max_violations: int = 20,
        max_messages_per_second: int = 200_000,
    ) -> None:
        self.trace = trace
        self.max_violations = max_violations
        #: More raft messages than this sent within one simulated second is a storm.
        self.max_messages_per_second = max_messages_per_second
        self._window = -1
        self._window_messages = 0
        self.violations: list[Violation] = []
        #: Called with each violation as it is found (the simulator stops the run).
        self.on_violation: Callable[[Violation], None] | None = None
        #: (group, term) -> the node that sent leader messages in that term.
        self.leaders: dict[tuple[int, int], int] = {}
        #: group -> (term, node) of the newest leader seen.
        self.current_leader: dict[int, tuple[int, int]] = {}
        #: group -> (index, term) -> (entry type, data, term before it or _UNKNOWN).
        self._persisted: dict[int, dict[tuple[int, int], tuple[EntryType, bytes, int]]] = {}
        #: group -> index -> (term, type, data, term of the replica that first committed it).
        self.committed: dict[int, dict[int, tuple[int, EntryType, bytes, int]]] = {}
        #: group -> highest committed index seen.
        self.commit_index: dict[int, int] = {}
        #: (node, group) -> durable commit index of that replica.
        self._durable_commit: dict[tuple[int, int], int] = {}
        #: group -> index -> applied hash chain there.
        self._chains: dict[int, dict[int, bytes]] = {}
        #: group -> index -> (node, command) applied before any durable commit covered it.
        self._applied_ahead: dict[int, dict[int, list[tuple[int, bytes]]]] = {}
        #: node -> its log engine, for leader completeness (registered by the cluster).
        self.engines: dict[int, SimLogEngine] = {}
        self.elections = 0
        self.entries_persisted = 0
        self.entries_committed = 0
        self.applies_checked = 0

    # ------------------------------------------------------------ reporting

    def violation(self, kind: str, detail: str, group: int | None = None) -> None:
        """Record a violation (beyond ``max_violations`` they are dropped)."""
        if len(self.violations) >= self.max_violations:
            return
        v = Violation(kind, detail, self.trace.clock(), group)
        self.violations.append(v)
        self.trace.record("VIOLATION", v.describe())
        if self.on_violation is not None:
            self.on_violation(v)

    # --------------------------------------------------------------- frames

    def on_frame(self, src: int, dst: int, frame: Frame) -> None:
        """Note the leader of every (group, term) that ``src`` sends leader messages for.

        Also counts messages per simulated second: traffic that keeps multiplying
        (a message storm) is reported instead of freezing the simulation.
        """
        window = int(self.trace.clock())
        if window != self._window:
            self._window = window
            self._window_messages = 0
        self._window_messages += len(frame.messages)
        if self._window_messages > self.max_messages_per_second:
            self._window_messages = -(1 << 62)  # report once per window
            self.violation(
                "message storm",
                f"more than {self.max_messages_per_second} raft messages sent within one "
                f"simulated second (node {src} to {dst}: {_frame_summary(frame)})",
            )
        for gm in frame.messages:
            m = gm.message
            if m.type in _LEADER_MESSAGES:
                self._leader_seen(gm.group_id, m.term, src)
        for rec in frame.heartbeats:
            self._leader_seen(rec.group_id, rec.term, src)
        self.trace.record(
            "frame",
            src,
            dst,
            [
                (gm.group_id, gm.message.type.name, gm.message.term, gm.message.index)
                for gm in frame.messages
            ],
            [(r.group_id, r.term, r.commit) for r in frame.heartbeats],
            [(r.group_id, r.term) for r in frame.heartbeat_responses],
        )

    def _leader_seen(self, group: int, term: int, node: int) -> None:
        key = (group, term)
        known = self.leaders.get(key)
        if known == node:
            return
        if known is not None:
            self.violation(
                "election safety",
                f"nodes {known} and {node} both lead term {term}",
                group,
            )
            return
        self.leaders[key] = node
        self.elections += 1
        current = self.current_leader.get(group)
        if current is None or current[0] < term:
            self.current_leader[group] = (term, node)
        self.trace.record("leader", f"group {group} term {term}: node {node}")
        engine = self.engines.get(node)
        if engine is not None:
            self.check_leader_completeness(node, engine, group, term)

    def check_leader_completeness(
        self, node: int, engine: SimLogEngine, group: int, term: int
    ) -> None:
        """``node`` leads ``term``: it must hold the newest entry committed before that term."""
        committed = self.committed.get(group)
        if not committed:
            return
        index = self.commit_index.get(group, 0)
        while index > 0:
            rec = committed.get(index)
            if rec is not None and rec[3] < term:
                break
            index -= 1
        if index <= 0:
            return
        storage = engine.storage(group)
        if index <= storage.snapshot().metadata.index:
            return
        try:
            have = storage.term(index)
        except (CompactedError, UnavailableError):
            have = None
        want = committed[index][0]
        if have != want:
            self.violation(
                "leader completeness",
                f"node {node} leads term {term} but holds term {have} at index {index}, "
                f"where an entry of term {want} was committed before term {term}",
                group,
            )

    # --------------------------------------------------------------- writes

    def on_write(self, node: int, engine: SimLogEngine, batch: WriteBatch) -> None:
        """Check and record the entries, snapshots and commit indexes ``node`` made durable."""
        entries = 0
        for gw in batch.groups:
            g = gw.group_id
            storage = engine.storage(g)
            if gw.snapshot is not None:
                md = gw.snapshot.metadata
                self._check_against_committed(node, g, md.index, md.term, None)
            if gw.entries:
                entries += len(gw.entries)
                self._record_entries(node, g, storage, gw.entries)
            if gw.hard_state is not None:
                self._advance_commit(node, g, storage, gw.hard_state.commit, gw.hard_state.term)
        self.entries_persisted += entries
        self.trace.record("write", node, [gw.group_id for gw in batch.groups], entries)

    def on_remove(self, node: int, group: int) -> None:
        """``node`` dropped every trace of ``group``: its commit index starts over."""
        self._durable_commit.pop((node, group), None)

    def _record_entries(
        self, node: int, group: int, storage: GroupStorage, entries: list[Entry]
    ) -> None:
        persisted = self._persisted.setdefault(group, {})
        for e in entries:
            try:
                prev = storage.term(e.index - 1)
            except (CompactedError, UnavailableError):
                prev = _UNKNOWN
            key = (e.index, e.term)
            known = persisted.get(key)
            if known is None:
                persisted[key] = (e.type, e.data, prev)
            else:
                if known[0] != e.type or known[1] != e.data:
                    self.violation(
                        "log matching",
                        f"node {node} persisted a different entry at index {e.index} "
                        f"term {e.term} than another replica did",
                        group,
                    )
                elif prev != _UNKNOWN and known[2] != _UNKNOWN and prev != known[2]:
                    self.violation(
                        "log matching",
                        f"node {node} holds entry {e.index}/{e.term} after term {prev}, "
                        f"another replica after term {known[2]}",
                        group,
                    )
                elif known[2] == _UNKNOWN and prev != _UNKNOWN:
                    persisted[key] = (e.type, e.data, prev)
        # A stale leader (or its follower) may persist entries that conflict with
        # committed ones: they are not committed there and will be replaced. Only a
        # replica replacing entries it had itself committed breaks safety.
        own_commit = self._durable_commit.get((node, group), 0)
        if entries[0].index <= own_commit:
            for e in entries:
                if e.index > own_commit:
                    break
                self._check_against_committed(node, group, e.index, e.term, e)

    def _check_against_committed(
        self, node: int, group: int, index: int, term: int, entry: Entry | None
    ) -> None:
        committed = self.committed.get(group)
        if not committed:
            return
        rec = committed.get(index)
        if rec is None:
            return
        if rec[0] != term:
            what = "an entry" if entry is not None else "a snapshot"
            self.violation(
                "committed entry changed",
                f"node {node} persisted {what} of term {term} at index {index}, "
                f"where an entry of term {rec[0]} was committed",
                group,
            )

    def _advance_commit(
        self, node: int, group: int, storage: GroupStorage, commit: int, term: int
    ) -> None:
        key = (node, group)
        before = self._durable_commit.get(key, 0)
        if commit < before:
            self.violation(
                "committed entry lost",
                f"node {node} moved its durable commit index back from {before} to {commit}",
                group,
            )
            self._durable_commit[key] = commit
            return
        if commit == before:
            return
        self._durable_commit[key] = commit
        snap_index = storage.snapshot().metadata.index
        first = max(before + 1, snap_index + 1, storage.first_index())
        committed = self.committed.setdefault(group, {})
        if first <= commit:
            try:
                ents = storage.entries(first, commit + 1, NO_LIMIT)
            except (CompactedError, UnavailableError) as exc:
                self.violation(
                    "committed entry lost",
                    f"node {node} committed up to {commit} without holding entries "
                    f"{first}..{commit}: {exc}",
                    group,
                )
                return
            ahead = self._applied_ahead.get(group)
            for e in ents:
                rec = committed.get(e.index)
                if rec is None:
                    committed[e.index] = (e.term, e.type, e.data, term)
                    self.entries_committed += 1
                    if ahead:
                        self._check_applied_ahead(group, e, ahead.pop(e.index, ()))
                elif rec[0] != e.term or rec[1] != e.type or rec[2] != e.data:
                    self.violation(
                        "committed entry changed",
                        f"node {node} committed term {e.term} at index {e.index}, "
                        f"where an entry of term {rec[0]} was committed before",
                        group,
                    )
        if commit > self.commit_index.get(group, 0):
            self.commit_index[group] = commit

    # -------------------------------------------------------------- applies

    def on_apply(self, node: int, group: int, index: int, command: bytes, chain: bytes) -> None:
        """Check one applied command against the commit record and the other replicas.

        A node may apply an entry before any durable commit index covers it (as
        etcd does: the leader learns the commit from its followers' answers, a
        commit index alone is written without a sync): the command is then
        checked against the entry committed there once a durable commit records it.
        """
        self.applies_checked += 1
        rec = self.committed.get(group, {}).get(index)
        if rec is None:
            ahead = self._applied_ahead.setdefault(group, {})
            ahead.setdefault(index, []).append((node, command))
        elif rec[1] is not _NORMAL or rec[2][HEADER_SIZE:] != command:
            self.violation(
                "state machine safety",
                f"node {node} applied at index {index} a command other than the committed one",
                group,
            )
        chains = self._chains.setdefault(group, {})
        known = chains.get(index)
        if known is None:
            chains[index] = chain
        elif known != chain:
            self.violation(
                "state machine safety",
                f"node {node} applied a different sequence of commands up to index {index} "
                "than another replica",
                group,
            )
        self.trace.record("apply", node, group, index)

    def _check_applied_ahead(
        self, group: int, e: Entry, applied: Iterable[tuple[int, bytes]]
    ) -> None:
        for node, command in applied:
            if e.type is not _NORMAL or e.data[HEADER_SIZE:] != command:
                self.violation(
                    "state machine safety",
                    f"node {node} applied at index {e.index} a command other than the one"
                    " committed there later",
                    group,
                )

    def on_apply_out_of_order(self, node: int, group: int, index: int, last: int) -> None:
        """A replica applied ``index`` after already applying ``last`` >= ``index``."""
        self.violation(
            "state machine safety",
            f"node {node} applied index {index} after having applied {last}",
            group,
        )

    def chain_at(self, group: int, index: int) -> bytes | None:
        """The applied hash chain every replica must have at ``index`` (None: not applied)."""
        return self._chains.get(group, {}).get(index)
