"""The raft core: a pure, deterministic state machine per group, as etcd raft.

Nothing here performs I/O, reads a clock or awaits. See ``RawNode`` for the
driving contract and ``Storage`` for what the core reads its log from.
"""

from multiraft.raft.config import Config
from multiraft.raft.errors import (
    CompactedError,
    ProposalDroppedError,
    RaftError,
    SnapOutOfDateError,
    SnapshotTemporarilyUnavailableError,
    StepLocalMsgError,
    StepPeerNotFoundError,
    StorageError,
    UnavailableError,
)
from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.rawnode import RawNode, Ready, Status
from multiraft.raft.storage import NO_LIMIT, Storage
from multiraft.raft.types import (
    NONE,
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ProgressState,
    ReadOnlyOption,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
    SoftState,
    StateType,
)

__all__ = [
    "NONE",
    "NO_LIMIT",
    "CompactedError",
    "Config",
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfChangeV2",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Inflights",
    "Message",
    "MessageType",
    "Progress",
    "ProgressState",
    "ProposalDroppedError",
    "RaftError",
    "RawNode",
    "ReadOnlyOption",
    "ReadState",
    "Ready",
    "SnapOutOfDateError",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotStatus",
    "SnapshotTemporarilyUnavailableError",
    "SoftState",
    "StateType",
    "Status",
    "StepLocalMsgError",
    "StepPeerNotFoundError",
    "Storage",
    "StorageError",
    "UnavailableError",
]
