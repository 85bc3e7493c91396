"""multiraft: thousands of Raft consensus groups per node, on trio.

The coordinator's public API: :func:`open_node` runs a :class:`Node` that hosts
many groups, configured by :class:`NodeConfig`, each replicating a
:class:`StateMachine`. Adapters (``storage``, ``transport``) are imported only
when used.
"""

from multiraft.config import NodeConfig, UnknownGroupPolicy
from multiraft.errors import (
    GroupExistsError,
    GroupFailedError,
    GroupNotFoundError,
    GroupRemovedError,
    MultiraftError,
    NodeClosedError,
    NotLeaderError,
    ProposalDroppedError,
    ProposalTimeoutError,
)
from multiraft.events import (
    Event,
    EventSubscription,
    GroupCreated,
    GroupFailed,
    GroupRemoved,
    LeaderChanged,
    MembershipChanged,
)
from multiraft.frames import Frame, GroupMessage, HeartbeatRecord, SnapshotOutcome
from multiraft.group_spec import GroupSpec
from multiraft.node import Node, open_node
from multiraft.ports import Transport
from multiraft.proposals import Completions, Waiter
from multiraft.state_machine import StateMachine

__all__ = [
    "Completions",
    "Event",
    "EventSubscription",
    "Frame",
    "GroupCreated",
    "GroupExistsError",
    "GroupFailed",
    "GroupFailedError",
    "GroupMessage",
    "GroupNotFoundError",
    "GroupRemovedError",
    "GroupRemoved",
    "GroupSpec",
    "HeartbeatRecord",
    "LeaderChanged",
    "MembershipChanged",
    "MultiraftError",
    "Node",
    "NodeClosedError",
    "NodeConfig",
    "NotLeaderError",
    "ProposalDroppedError",
    "ProposalTimeoutError",
    "SnapshotOutcome",
    "StateMachine",
    "Transport",
    "UnknownGroupPolicy",
    "Waiter",
    "open_node",
]
