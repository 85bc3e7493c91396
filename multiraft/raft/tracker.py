"""Membership configuration and per-peer progress of one raft group."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

from multiraft.raft.interning import InternTable
from multiraft.raft.progress import Progress
from multiraft.raft.quorum import JointConfig, VoteResult
from multiraft.raft.types import ConfState

__all__ = ["ProgressTracker", "TrackerConfig"]

_NO_IDS: frozenset[int] = frozenset()
_NO_VOTERS = JointConfig()


class TrackerConfig:
    """Who votes and who learns.

    ``voters`` holds the incoming and (during joint consensus) outgoing
    majorities. ``learners`` never intersects either half. ``learners_next``
    holds outgoing voters that become learners when the joint config is left
    (a node cannot be voter and learner at once). ``auto_leave`` asks the leader
    to leave the joint config on its own once it is committed. A config is not
    changed once built (a change builds a new one), so its learner sets are read-only,
    and equal configs are one shared instance (only :meth:`clone` makes a private,
    mutable copy).
    """

    __slots__ = ("auto_leave", "learners", "learners_next", "voters")

    voters: JointConfig
    auto_leave: bool
    learners: AbstractSet[int]
    learners_next: AbstractSet[int]

    def __new__(
        cls,
        voters: JointConfig | None = None,
        auto_leave: bool = False,
        learners: AbstractSet[int] | None = None,
        learners_next: AbstractSet[int] | None = None,
    ) -> TrackerConfig:
        # Most groups of a node share a few memberships: equal configs are one
        # shared instance (see multiraft.raft.interning), so a group costs no
        # config objects of its own. Nearly every group has no learners: their
        # sets are then one shared empty frozenset.
        key = (
            voters if voters is not None else _NO_VOTERS,
            auto_leave,
            frozenset(learners) if learners else _NO_IDS,
            frozenset(learners_next) if learners_next else _NO_IDS,
        )
        known = _CONFIGS.get(key)
        if known is None:
            known = object.__new__(cls)
            known.voters, known.auto_leave, known.learners, known.learners_next = key
            _CONFIGS.add(key, known)
        return known

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrackerConfig):
            return NotImplemented
        return (
            self.voters == other.voters
            and self.auto_leave == other.auto_leave
            and self.learners == other.learners
            and self.learners_next == other.learners_next
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"voters={self.voters!r}"]
        if self.learners:
            parts.append(f"learners=({' '.join(map(str, sorted(self.learners)))})")
        if self.learners_next:
            parts.append(f"learners_next=({' '.join(map(str, sorted(self.learners_next)))})")
        if self.auto_leave:
            parts.append("autoleave")
        return " ".join(parts)

    def conf_state(self) -> ConfState:
        """This membership as a :class:`ConfState`."""
        return ConfState(
            voters=self.voters.incoming.slice(),
            voters_outgoing=self.voters.outgoing.slice(),
            learners=self.learners,
            learners_next=self.learners_next,
            auto_leave=self.auto_leave,
        )

    def clone(self) -> TrackerConfig:
        """A copy whose learner sets can be changed independently (voters are immutable)."""
        other = object.__new__(TrackerConfig)
        other.voters = self.voters
        other.auto_leave = self.auto_leave
        other.learners = set(self.learners)
        other.learners_next = set(self.learners_next)
        return other


_ConfigKey = tuple[JointConfig, bool, frozenset[int], frozenset[int]]
_CONFIGS: InternTable[_ConfigKey, TrackerConfig] = InternTable()

#: The votes of every tracker outside an election: one shared empty dict that is
#: never written (:meth:`ProgressTracker.record_vote` makes a private one), so a
#: group that is not electing keeps no dict of its own.
_NO_VOTES: dict[int, bool] = {}


class ProgressTracker:
    """The leader's bookkeeping for a group: configuration, progress of every member, votes."""

    __slots__ = ("config", "max_inflight", "max_inflight_bytes", "progress", "votes")

    def __init__(self, max_inflight: int, max_inflight_bytes: int) -> None:
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes
        self.config = TrackerConfig()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = _NO_VOTES

    def _matched_index(self, node_id: int) -> int | None:
        pr = self.progress.get(node_id)
        return None if pr is None else pr.match

    def conf_state(self) -> ConfState:
        """The current membership as a :class:`ConfState`."""
        return self.config.conf_state()

    def is_singleton(self) -> bool:
        """True when the group has exactly one voter and is not joint."""
        voters = self.config.voters
        return len(voters.incoming) == 1 and len(voters.outgoing) == 0

    def committed(self) -> int:
        """The largest index replicated on a quorum of voters (both halves when joint)."""
        # Bound per call rather than kept: a stored bound method would be one more
        # long-lived object per group for the garbage collector to visit.
        return self.config.voters.committed_index(self._matched_index)

    def visit(self, fn: Callable[[int, Progress], None]) -> None:
        """Call ``fn(id, progress)`` for every tracked member, in ascending id order."""
        progress = self.progress
        for node_id in sorted(progress):
            fn(node_id, progress[node_id])

    def quorum_active(self) -> bool:
        """True if a quorum of voters was recently active.

        The leader marks its own progress ``recent_active`` before asking.
        """
        active = {
            node_id: pr.recent_active for node_id, pr in self.progress.items() if not pr.is_learner
        }
        return self.config.voters.vote_result(active) == VoteResult.WON

    def voter_nodes(self) -> list[int]:
        """Ids of all voters (either half), ascending."""
        return sorted(self.config.voters.ids())

    def learner_nodes(self) -> list[int]:
        """Ids of the learners, ascending (staged ``learners_next`` are still voters)."""
        return sorted(self.config.learners)

    def share_idle_windows(self) -> None:
        """Swap every empty private inflights window for the shared one (an idle
        group then keeps no window of its own)."""
        for pr in self.progress.values():
            pr.share_window_if_empty()

    def reset_votes(self) -> None:
        """Forget every recorded vote (a new election starts)."""
        self.votes = _NO_VOTES

    def record_vote(self, node_id: int, granted: bool) -> None:
        """Record ``node_id``'s vote; a later vote from the same node is ignored."""
        votes = self.votes
        if node_id in votes:
            return
        if votes is _NO_VOTES:
            self.votes = {node_id: granted}
        else:
            votes[node_id] = granted

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """Granted and rejected votes among tracked voters, and the election's standing."""
        granted = 0
        rejected = 0
        votes = self.votes
        for node_id, pr in self.progress.items():
            if pr.is_learner:
                continue
            v = votes.get(node_id)
            if v is None:
                continue
            if v:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.config.voters.vote_result(votes)
