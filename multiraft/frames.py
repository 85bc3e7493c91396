"""What nodes send each other: one frame per destination per ready cycle.

A frame carries the raft messages of any number of groups plus the coalesced
heartbeats and heartbeat responses, as compact records instead of one raft
message per group. Records always carry term and commit: a receiver must never
have to guess the term of a heartbeat.
"""

from __future__ import annotations

import attrs

from multiraft.raft.types import Message, SnapshotStatus

__all__ = ["Frame", "GroupMessage", "HeartbeatRecord", "SnapshotOutcome"]


@attrs.define(slots=True)
class HeartbeatRecord:
    """One group's heartbeat (or response) inside a coalesced frame.

    ``quiesce`` on a heartbeat asks the follower to stop ticking the group; on a
    response it tells the leader the follower did.
    """

    group_id: int
    from_: int
    to: int
    term: int
    commit: int
    context: bytes = b""
    quiesce: bool = False


@attrs.define(slots=True)
class GroupMessage:
    """A raft message of one group."""

    group_id: int
    message: Message


@attrs.define(slots=True)
class Frame:
    """Everything one node sends another in one go.

    An empty frame still proves the sender is alive (node liveness).
    """

    from_node: int
    to_node: int
    messages: list[GroupMessage] = attrs.field(factory=list)
    heartbeats: list[HeartbeatRecord] = attrs.field(factory=list)
    heartbeat_responses: list[HeartbeatRecord] = attrs.field(factory=list)

    def is_empty(self) -> bool:
        """True when the frame only says "alive"."""
        return not (self.messages or self.heartbeats or self.heartbeat_responses)

    def message_count(self) -> int:
        """Raft messages carried, counting each heartbeat record as one."""
        return len(self.messages) + len(self.heartbeats) + len(self.heartbeat_responses)

    def has_snapshot(self) -> bool:
        """Whether any message carries a snapshot (its fate must be reported)."""
        return any(gm.message.snapshot is not None for gm in self.messages)


@attrs.define(slots=True)
class SnapshotOutcome:
    """A transport's report on a snapshot a node sent to ``to_node`` for ``group_id``."""

    group_id: int
    to_node: int
    status: SnapshotStatus
