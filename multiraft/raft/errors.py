"""Exceptions raised by the raft core and by implementations of its Storage protocol."""

from __future__ import annotations

__all__ = [
    "CompactedError",
    "ProposalDroppedError",
    "RaftError",
    "SnapOutOfDateError",
    "SnapshotTemporarilyUnavailableError",
    "StepLocalMsgError",
    "StepPeerNotFoundError",
    "StorageError",
    "UnavailableError",
]


class RaftError(Exception):
    """Base class of every error of the raft core."""


class ProposalDroppedError(RaftError):
    """A proposal was refused: no leader, forwarding disabled, size limit, or a transfer."""


class StepLocalMsgError(RaftError):
    """A message type that only the node itself may produce came in from the network."""


class StepPeerNotFoundError(RaftError):
    """A response came from a peer that the group does not know."""


class StorageError(RaftError):
    """Base class of the errors of the Storage protocol."""


class CompactedError(StorageError):
    """The requested index is older than the first index still in the log."""


class SnapOutOfDateError(StorageError):
    """The snapshot is older than the one storage already has."""


class UnavailableError(StorageError):
    """The requested index is past the end of the log."""


class SnapshotTemporarilyUnavailableError(StorageError):
    """A snapshot is being produced; try again later."""
