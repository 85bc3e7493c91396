"""Exceptions raised by the coordinator's public API."""

from __future__ import annotations

from multiraft.raft.errors import ProposalDroppedError

__all__ = [
    "GroupExistsError",
    "GroupFailedError",
    "GroupNotFoundError",
    "GroupRemovedError",
    "MultiraftError",
    "NodeClosedError",
    "NotLeaderError",
    "ProposalDroppedError",
    "ProposalTimeoutError",
]


class MultiraftError(Exception):
    """Base class of the coordinator's own errors."""


class GroupNotFoundError(MultiraftError, KeyError):
    """The node does not host the group."""

    def __init__(self, group_id: int) -> None:
        super().__init__(f"group {group_id} is not hosted on this node")
        self.group_id = group_id

    def __str__(self) -> str:
        return str(self.args[0])


class GroupRemovedError(MultiraftError):
    """The group was removed from this node (its tombstone forbids re-creating it)."""

    def __init__(self, group_id: int) -> None:
        super().__init__(f"group {group_id} was removed from this node")
        self.group_id = group_id


class GroupFailedError(MultiraftError):
    """The group was stopped on this node: its raft refused an input as impossible.

    ``reason`` names the broken invariant (for instance an append that conflicts
    with committed entries, which only a faulty or hostile peer sends).
    """

    def __init__(self, group_id: int, reason: str) -> None:
        super().__init__(f"group {group_id} was stopped on this node: {reason}")
        self.group_id = group_id
        self.reason = reason


class GroupExistsError(MultiraftError, ValueError):
    """``create_group`` for a group the node already hosts."""

    def __init__(self, group_id: int) -> None:
        super().__init__(f"group {group_id} is already hosted on this node")
        self.group_id = group_id


class NotLeaderError(MultiraftError):
    """No leader was known for the group within the deadline.

    ``leader_hint`` is the last leader this node heard of, or None.
    """

    def __init__(self, group_id: int, leader_hint: int | None) -> None:
        hint = f"; last known leader {leader_hint}" if leader_hint else ""
        super().__init__(f"group {group_id} has no leader{hint}")
        self.group_id = group_id
        self.leader_hint = leader_hint


class ProposalTimeoutError(MultiraftError):
    """The request was accepted but its outcome was not seen within the deadline.

    ``leader_hint`` is the leader this node knows of, or None. The command may
    still be applied later.
    """

    def __init__(self, group_id: int, leader_hint: int | None, what: str = "proposal") -> None:
        super().__init__(
            f"{what} in group {group_id} did not complete before the deadline"
            f" (leader hint {leader_hint})"
        )
        self.group_id = group_id
        self.leader_hint = leader_hint


class NodeClosedError(MultiraftError):
    """The node is shutting down; the request was abandoned."""
