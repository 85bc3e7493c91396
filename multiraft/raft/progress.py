"""A leader's view of how far one follower (or learner) has replicated its log."""

from __future__ import annotations

from multiraft.raft.inflights import Inflights
from multiraft.raft.types import ProgressState

__all__ = ["Progress"]

_STATE_NAMES = {
    ProgressState.PROBE: "StateProbe",
    ProgressState.REPLICATE: "StateReplicate",
    ProgressState.SNAPSHOT: "StateSnapshot",
}


class Progress:
    """Replication state of one peer, kept by the leader.

    ``match`` is the highest index known to be in the peer's log; ``next`` the
    next index to send (invariant ``match < next``). In PROBE the leader sends
    one append per heartbeat interval until it finds where the logs agree; in
    REPLICATE it pipelines appends bounded by ``inflights``; in SNAPSHOT it waits
    for the snapshot at ``pending_snapshot`` to be reported. ``sent_commit`` is
    the highest commit index already sent to the peer (invariant
    ``sent_commit < next``), so the leader can skip sends that tell it nothing.
    ``probe_next`` is the index right after the last entry the latest probe of
    this PROBE state carried (the probe's ``next`` when it carried none), 0
    before any probe: it tells which answers can belong to the outstanding probe.
    """

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "msg_app_flow_paused",
        "next",
        "pending_snapshot",
        "probe_next",
        "recent_active",
        "sent_commit",
        "state",
    )

    def __init__(
        self,
        next: int,
        inflights: Inflights,
        *,
        match: int = 0,
        is_learner: bool = False,
        recent_active: bool = False,
    ) -> None:
        self.inflights = inflights
        self.is_learner = is_learner
        self._start(next, match)
        self.recent_active = recent_active

    def _start(self, next: int, match: int) -> None:
        if next <= match:
            raise ValueError(f"progress needs match < next, got match={match} next={next}")
        self.match = match
        self.next = next
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.probe_next = 0
        self.recent_active = False
        self.msg_app_flow_paused = False
        self.sent_commit = 0

    def __repr__(self) -> str:
        parts = [f"{_STATE_NAMES[self.state]} match={self.match} next={self.next}"]
        if self.is_learner:
            parts.append("learner")
        if self.is_paused():
            parts.append("paused")
        if self.pending_snapshot > 0:
            parts.append(f"pendingSnap={self.pending_snapshot}")
        if not self.recent_active:
            parts.append("inactive")
        count = self.inflights.count()
        if count > 0:
            parts.append(f"inflight={count}" + ("[full]" if self.inflights.full() else ""))
        return " ".join(parts)

    def clone(self) -> Progress:
        """An independent copy (the inflights window is copied too)."""
        other = Progress(
            self.next,
            self.inflights.clone(),
            match=self.match,
            is_learner=self.is_learner,
            recent_active=self.recent_active,
        )
        other.state = self.state
        other.pending_snapshot = self.pending_snapshot
        other.msg_app_flow_paused = self.msg_app_flow_paused
        other.sent_commit = self.sent_commit
        other.probe_next = self.probe_next
        return other

    def restart(self, next: int, match: int = 0) -> None:
        """Become what a new ``Progress(next, match=match)`` would be, keeping ``is_learner``.

        A leader change restarts every peer's progress; reusing the object (and
        its now empty inflights window) spares thousands of groups electing at
        once two allocations per peer per election.
        """
        self._start(next, match)
        self.inflights.reset()

    def share_window_if_empty(self) -> None:
        """Hand back a private window with nothing in flight for the shared empty one.

        Nothing observable changes (an empty window is an empty window); the
        private one is made again on the next append sent in REPLICATE.
        """
        w = self.inflights
        if not w.is_shared and w.count() == 0:
            self.inflights = Inflights.shared_empty(w.size, w.max_bytes)

    def reset_state(self, state: ProgressState) -> None:
        """Enter ``state`` with flow unpaused, no pending snapshot, no probe and an empty window."""
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.probe_next = 0
        self.state = state
        self.inflights.reset()

    def _clamp_sent_commit(self) -> None:
        # A commit index beyond next-1 cannot have reached the peer's log yet.
        if self.sent_commit >= self.next:
            self.sent_commit = self.next - 1

    def become_probe(self) -> None:
        """Enter PROBE from ``match + 1``, or past the snapshot just sent if that is further."""
        if self.state == ProgressState.SNAPSHOT:
            # The snapshot reached the peer, so probing can resume right after it.
            pending = self.pending_snapshot
            self.reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self.reset_state(ProgressState.PROBE)
            self.next = self.match + 1
        self._clamp_sent_commit()

    def become_replicate(self) -> None:
        """Enter REPLICATE, sending from ``match + 1``."""
        self.reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1
        self._clamp_sent_commit()

    def become_snapshot(self, snapshot_index: int) -> None:
        """Enter SNAPSHOT, waiting for the snapshot at ``snapshot_index`` to be applied."""
        self.reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_entries(self, entries: int, size_bytes: int) -> None:
        """Account for an append of ``entries`` entries (``size_bytes`` total) just sent.

        In REPLICATE the entries go into the window and ``next`` moves past them.
        In PROBE the flow pauses until a response or heartbeat response: one
        probe at a time, and where the probe ends is remembered.
        """
        if self.state == ProgressState.REPLICATE:
            if entries > 0:
                self.next += entries
                w = self.inflights
                if w.is_shared:
                    w = self.inflights = w.private()
                w.add(self.next - 1, size_bytes)
        elif self.state == ProgressState.PROBE:
            self.msg_app_flow_paused = True
            self.probe_next = self.next + entries

    def maybe_update(self, n: int) -> bool:
        """Apply an acknowledgement of index ``n``; False if it told nothing new."""
        updated = False
        if n > self.match:
            self.match = n
            self.msg_app_flow_paused = False
            updated = True
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Apply a rejection of the append at ``rejected``; False if it is stale.

        ``match_hint`` is the follower's guess of the last index that may match.
        In REPLICATE a genuine rejection rewinds ``next`` to ``match + 1``. In
        PROBE and SNAPSHOT only a rejection of the last probe (``next - 1``)
        counts, and ``next`` moves to the hint, never below ``match + 1``.
        """
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            self._clamp_sent_commit()
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self._clamp_sent_commit()
        self.msg_app_flow_paused = False
        return True

    def probe_answered_by_match(self) -> bool:
        """In PROBE: whether an acknowledgement of exactly ``match`` can answer the last probe.

        A follower accepting a probe acknowledges at least the probe's last
        index, which is ``match`` only for an empty probe sent from ``match + 1``.
        Before any probe of this state (after a snapshot or an unreachable
        report) such an acknowledgement answers something older.
        """
        return self.probe_next == self.match + 1

    def is_stale_rejection(self, rejected: int, reject_hint: int) -> bool:
        """Whether a rejection of the append at ``rejected`` cannot be news.

        Every append sent in the current state lies between ``match`` and
        ``next``, so a rejection outside ``(match, next)`` answers an older one.
        A follower that holds ``match`` hints at least ``match``; a smaller hint
        was written before the follower got there.
        """
        return rejected <= self.match or rejected >= self.next or reject_hint < self.match

    def is_paused(self) -> bool:
        """True when no append may be sent now: a probe is outstanding, the window is
        full, or a snapshot is pending."""
        state = self.state
        if state == ProgressState.PROBE:
            return self.msg_app_flow_paused
        if state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def can_bump_commit(self, index: int) -> bool:
        """True if sending commit ``index`` may advance the peer's commit index.

        The peer can only commit what it holds, so the useful commit is capped at
        ``next - 1``; anything at or below ``sent_commit`` was already sent.
        """
        return self.sent_commit < min(index, self.next - 1)

    def record_sent_commit(self, commit: int) -> None:
        """Note that commit index ``commit`` was sent to the peer."""
        if commit > self.sent_commit:
            self.sent_commit = min(commit, self.next - 1)
