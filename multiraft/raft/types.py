"""Data types of the raft core: entries, messages, states, snapshots and conf changes.

Every value that crosses the boundary of a group (to the log, to the wire, to the
application) is one of these attrs classes. Values are immutable except
:class:`Message`, which the leader fills in (``term``, ``from_``) as it sends.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs

from multiraft.raft.interning import InternTable

__all__ = [
    "NONE",
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfChangeV2",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "ProgressState",
    "ReadOnlyOption",
    "ReadState",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotStatus",
    "SoftState",
    "StateType",
    "EMPTY_HARD_STATE",
    "EMPTY_SNAPSHOT",
    "is_local_msg",
    "is_response_msg",
    "vote_resp_msg_type",
]

#: Node id meaning "no node" (no leader, no vote).
NONE = 0


class MessageType(enum.IntEnum):
    """Kinds of raft messages, local and remote (etcd's ``MsgXxx``)."""

    HUP = 0
    BEAT = 1
    PROP = 2
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10
    SNAP_STATUS = 11
    CHECK_QUORUM = 12
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


class StateType(enum.IntEnum):
    """Role of a raft node in its group."""

    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class ProgressState(enum.IntEnum):
    """How a leader is currently replicating to one follower."""

    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class SnapshotStatus(enum.IntEnum):
    """Outcome of sending a snapshot, reported by the link layer."""

    FINISH = 0
    FAILURE = 1


class EntryType(enum.IntEnum):
    """Kind of a log entry."""

    NORMAL = 0
    CONF_CHANGE = 1
    CONF_CHANGE_V2 = 2


class ConfChangeType(enum.IntEnum):
    """Kind of a single membership change."""

    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


class ConfChangeTransition(enum.IntEnum):
    """How a joint configuration is left (see ``ConfChangeV2``)."""

    AUTO = 0
    IMPLICIT = 1
    EXPLICIT = 2


class ReadOnlyOption(enum.IntEnum):
    """How linearizable reads are confirmed by the leader."""

    SAFE = 0
    LEASE_BASED = 1


_LOCAL_MSGS = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)
_RESPONSE_MSGS = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.UNREACHABLE,
        MessageType.READ_INDEX_RESP,
        MessageType.PRE_VOTE_RESP,
    }
)


def is_local_msg(t: MessageType) -> bool:
    """True for message types that only a node sends to itself."""
    return t in _LOCAL_MSGS


def is_response_msg(t: MessageType) -> bool:
    """True for message types that answer a request from a peer."""
    return t in _RESPONSE_MSGS


def vote_resp_msg_type(t: MessageType) -> MessageType:
    """The response type for a VOTE or PRE_VOTE request."""
    if t == MessageType.VOTE:
        return MessageType.VOTE_RESP
    if t == MessageType.PRE_VOTE:
        return MessageType.PRE_VOTE_RESP
    raise ValueError(f"not a vote message: {t!r}")


@attrs.frozen(slots=True)
class Entry:
    """One log entry."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def size(self) -> int:
        """Approximate encoded size in bytes, used for message and window limits."""
        return len(self.data) + 16


@attrs.frozen(slots=True)
class HardState:
    """The state a node must persist before sending messages: term, vote, commit."""

    term: int = 0
    vote: int = 0
    commit: int = 0

    def is_empty(self) -> bool:
        """True when this is the zero hard state."""
        return self.term == 0 and self.vote == 0 and self.commit == 0


EMPTY_HARD_STATE = HardState()

#: Equal hard states kept past a Ready share one instance: settled groups created
#: together hold the same few (same term, vote and commit index).
_HARD_STATES: InternTable[HardState, HardState] = InternTable()


def shared_hard_state(hs: HardState) -> HardState:
    """The instance equal to ``hs`` that is shared with the groups keeping one
    (``hs`` itself if it is the first)."""
    known = _HARD_STATES.get(hs)
    return known if known is not None else _HARD_STATES.add(hs, hs)


def _int_tuple(v: Any) -> tuple[int, ...]:
    return tuple(sorted(int(x) for x in v))


@attrs.frozen(slots=True)
class ConfState:
    """A group's membership: voters (incoming and outgoing when joint) and learners."""

    voters: tuple[int, ...] = attrs.field(default=(), converter=_int_tuple)
    learners: tuple[int, ...] = attrs.field(default=(), converter=_int_tuple)
    voters_outgoing: tuple[int, ...] = attrs.field(default=(), converter=_int_tuple)
    learners_next: tuple[int, ...] = attrs.field(default=(), converter=_int_tuple)
    auto_leave: bool = False

    def is_empty(self) -> bool:
        """True when no member of any kind is listed."""
        return not (self.voters or self.learners or self.voters_outgoing or self.learners_next)


@attrs.frozen(slots=True)
class SnapshotMetadata:
    """Where a snapshot sits in the log and which membership it carries."""

    conf_state: ConfState = ConfState()
    index: int = 0
    term: int = 0


@attrs.frozen(slots=True)
class Snapshot:
    """A state machine snapshot with its metadata."""

    metadata: SnapshotMetadata = SnapshotMetadata()
    data: bytes = b""

    def is_empty(self) -> bool:
        """True for the zero snapshot (index 0)."""
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


@attrs.frozen(slots=True)
class ConfChange:
    """A single membership change (etcd's ConfChange v1)."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def to_bytes(self) -> bytes:
        """Encode as the data of a CONF_CHANGE entry."""
        from multiraft.codec import encode

        return encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> ConfChange:
        """Decode the data of a CONF_CHANGE entry."""
        from multiraft.codec import decode

        return decode(data, cls)

    def as_v2(self) -> ConfChangeV2:
        """The equivalent V2 change."""
        return ConfChangeV2(
            changes=(ConfChangeSingle(self.type, self.node_id),), context=self.context
        )


@attrs.frozen(slots=True)
class ConfChangeSingle:
    """One change inside a :class:`ConfChangeV2`."""

    type: ConfChangeType
    node_id: int


def _singles(v: Iterable[ConfChangeSingle]) -> tuple[ConfChangeSingle, ...]:
    return tuple(v)


@attrs.frozen(slots=True)
class ConfChangeV2:
    """A set of membership changes applied together, possibly through joint consensus.

    With one change (or only learner changes) and transition AUTO, the change is
    applied directly. Otherwise the group enters a joint configuration, left
    automatically (AUTO, IMPLICIT) or by an explicit empty ``ConfChangeV2``
    (EXPLICIT).
    """

    changes: tuple[ConfChangeSingle, ...] = attrs.field(default=(), converter=_singles)
    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    context: bytes = b""

    def to_bytes(self) -> bytes:
        """Encode as the data of a CONF_CHANGE_V2 entry."""
        from multiraft.codec import encode

        return encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> ConfChangeV2:
        """Decode the data of a CONF_CHANGE_V2 entry."""
        from multiraft.codec import decode

        return decode(data, cls)

    def as_v2(self) -> ConfChangeV2:
        """Itself (so v1 and v2 changes share one code path)."""
        return self

    def enter_joint(self) -> tuple[bool, bool]:
        """Whether this change uses joint consensus, and whether it leaves it automatically."""
        if self.transition != ConfChangeTransition.AUTO or len(self.changes) > 1:
            auto_leave = self.transition in (
                ConfChangeTransition.AUTO,
                ConfChangeTransition.IMPLICIT,
            )
            return True, auto_leave
        return False, False

    def leave_joint(self) -> bool:
        """True for the empty change that leaves a joint configuration."""
        # The context is free for the application; only changes and transition matter.
        return not self.changes and self.transition == ConfChangeTransition.AUTO


@attrs.define(slots=True, eq=True)
class Message:
    """A raft message between two members of one group (or a local one)."""

    type: MessageType
    to: int = 0
    from_: int = 0
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


@attrs.frozen(slots=True)
class SoftState:
    """Volatile state worth reporting: the leader and our role."""

    lead: int = NONE
    raft_state: StateType = StateType.FOLLOWER


@attrs.frozen(slots=True)
class ReadState:
    """A linearizable read is safe once the state machine applied ``index``."""

    index: int
    request_ctx: bytes
