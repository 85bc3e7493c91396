"""Quorum arithmetic: majority and joint configurations of voters.

A :class:`MajorityConfig` answers two questions for one set of voters: which log
index a majority has acknowledged, and how an election stands. A
:class:`JointConfig` pairs the incoming and outgoing majorities used during
joint consensus; a decision needs both halves.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping

from multiraft.raft.interning import InternTable

__all__ = ["MAX_INDEX", "JointConfig", "MajorityConfig", "VoteResult"]

#: What an empty majority reports as committed, so that ``min`` over a joint
#: config whose outgoing half is empty yields the incoming half's answer.
MAX_INDEX = (1 << 63) - 1


class VoteResult(enum.IntEnum):
    """Standing of an election (or of any yes/no poll) in a configuration."""

    PENDING = 1
    LOST = 2
    WON = 3


class MajorityConfig:
    """An immutable set of voter ids deciding by simple majority.

    Equal configs are one shared instance (see :mod:`multiraft.raft.interning`).
    """

    __slots__ = ("_ids", "_sorted")

    _ids: frozenset[int]
    _sorted: tuple[int, ...]

    def __new__(cls, ids: Iterable[int] = ()) -> MajorityConfig:
        key = frozenset(ids)
        known = _MAJORITIES.get(key)
        if known is None:
            known = object.__new__(cls)
            known._ids = key
            known._sorted = tuple(sorted(key))
            _MAJORITIES.add(key, known)
        return known

    def __len__(self) -> int:
        return len(self._sorted)

    def __iter__(self) -> Iterator[int]:
        return iter(self._sorted)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MajorityConfig):
            return NotImplemented
        return self._ids == other._ids

    def __hash__(self) -> int:
        return hash(self._ids)

    def __repr__(self) -> str:
        return "(" + " ".join(str(i) for i in self._sorted) + ")"

    def slice(self) -> tuple[int, ...]:
        """The voter ids in ascending order."""
        return self._sorted

    def ids(self) -> frozenset[int]:
        """The voter ids as a set."""
        return self._ids

    def committed_index(self, acked: Callable[[int], int | None]) -> int:
        """The largest index acknowledged by a majority of the voters.

        ``acked(id)`` gives the index a voter is known to hold, or ``None`` when
        unknown (counted as 0). An empty config returns :data:`MAX_INDEX`.
        """
        voters = self._sorted
        n = len(voters)
        if n == 0:
            return MAX_INDEX
        if n == 1:
            return acked(voters[0]) or 0
        matched = [acked(i) or 0 for i in voters]
        matched.sort()
        # Every index at or left of this position (from the top) is held by n//2+1 voters.
        return matched[n - (n // 2 + 1)]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """WON once a majority said yes, LOST once a majority can no longer say yes.

        Votes of ids outside the config are ignored. An empty config wins, so a
        joint config with an empty outgoing half behaves like its incoming half.
        """
        n = len(self._sorted)
        if n == 0:
            return VoteResult.WON
        granted = 0
        missing = 0
        for node_id in self._sorted:
            v = votes.get(node_id)
            if v is None:
                missing += 1
            elif v:
                granted += 1
        quorum = n // 2 + 1
        if granted >= quorum:
            return VoteResult.WON
        if granted + missing >= quorum:
            return VoteResult.PENDING
        return VoteResult.LOST


_MAJORITIES: InternTable[frozenset[int], MajorityConfig] = InternTable()
_EMPTY = MajorityConfig()


class JointConfig:
    """The incoming and outgoing majorities; outside joint consensus the outgoing is empty.

    Immutable; equal configs are one shared instance.
    """

    __slots__ = ("incoming", "outgoing")

    incoming: MajorityConfig
    outgoing: MajorityConfig

    def __new__(
        cls, incoming: MajorityConfig = _EMPTY, outgoing: MajorityConfig = _EMPTY
    ) -> JointConfig:
        key = (incoming, outgoing)
        known = _JOINTS.get(key)
        if known is None:
            known = object.__new__(cls)
            known.incoming = incoming
            known.outgoing = outgoing
            _JOINTS.add(key, known)
        return known

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JointConfig):
            return NotImplemented
        return self.incoming == other.incoming and self.outgoing == other.outgoing

    def __hash__(self) -> int:
        return hash((self.incoming, self.outgoing))

    def __repr__(self) -> str:
        if len(self.outgoing) == 0:
            return repr(self.incoming)
        return f"{self.incoming!r}&&{self.outgoing!r}"

    def is_joint(self) -> bool:
        """True while a joint configuration is active (the outgoing half is non-empty)."""
        return len(self.outgoing) > 0

    def ids(self) -> set[int]:
        """Every voter of either half."""
        return set(self.incoming.ids()) | self.outgoing.ids()

    def committed_index(self, acked: Callable[[int], int | None]) -> int:
        """The largest index committed in both halves."""
        incoming = self.incoming.committed_index(acked)
        if len(self.outgoing) == 0:
            return incoming
        return min(incoming, self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """WON when both halves won, LOST when either lost, otherwise PENDING."""
        first = self.incoming.vote_result(votes)
        second = self.outgoing.vote_result(votes)
        if first == second:
            return first
        if VoteResult.LOST in (first, second):
            return VoteResult.LOST
        return VoteResult.PENDING


_JOINTS: InternTable[tuple[MajorityConfig, MajorityConfig], JointConfig] = InternTable()
