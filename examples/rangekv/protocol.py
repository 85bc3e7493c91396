"""Requests a client (or the demo) sends to a node's :class:`RangeHost`, and replies.

In one process they are passed as objects (:class:`LocalLink`); between
processes they travel packed with :mod:`examples.rangekv.wire` over
:mod:`examples.rangekv.rpc`. Data replies reuse the outcomes of
:mod:`examples.rangekv.commands`.
"""

from __future__ import annotations

import attrs

from examples.rangekv.descriptor import RangeDescriptor
from examples.rangekv.directory import Placement
from examples.rangekv.wire import message

__all__ = [
    "BootstrapRequest",
    "DescriptorReply",
    "DirectoryCommandRequest",
    "DropReplicaRequest",
    "DumpReply",
    "DumpRequest",
    "GetRequest",
    "LookupRequest",
    "MoveReplicaRequest",
    "NotHosted",
    "NotLeader",
    "Ok",
    "PrepareReplicaRequest",
    "RangeDump",
    "RangesReply",
    "RangesRequest",
    "ScanRequest",
    "SetPeersRequest",
    "SplitRequest",
    "StatsReply",
    "StatsRequest",
    "TransferLeaderRequest",
    "Unavailable",
    "WriteRequest",
]

# ------------------------------------------------------------------ requests


@message(40)
@attrs.frozen(slots=True)
class WriteRequest:
    """Propose ``command`` (a packed Put, Delete or CompareAndSet) to the range."""

    range_id: int
    command: bytes


@message(41)
@attrs.frozen(slots=True)
class GetRequest:
    """Linearizable read of ``key`` from the range."""

    range_id: int
    key: bytes


@message(42)
@attrs.frozen(slots=True)
class ScanRequest:
    """Up to ``limit`` keys in ``[start, end)`` from the range holding ``start``."""

    range_id: int
    start: bytes
    end: bytes | None
    limit: int


@message(43)
@attrs.frozen(slots=True)
class LookupRequest:
    """The directory's range for ``key`` (after a read barrier on the directory)."""

    key: bytes


@message(44)
@attrs.frozen(slots=True)
class RangesRequest:
    """Every range in the directory, after a read barrier on the directory.

    ``consistent`` False: answered from the node's directory replica as applied
    so far, without the barrier (cheaper; may be stale).
    """

    consistent: bool = True


@message(45)
@attrs.frozen(slots=True)
class SplitRequest:
    """Split the range now, at ``key`` or (None) at its middle key; sent to its leader."""

    range_id: int
    key: bytes | None = None


@message(46)
@attrs.frozen(slots=True)
class StatsRequest:
    """The node's counters and how many groups it hosts and leads."""


@message(47)
@attrs.frozen(slots=True)
class DumpRequest:
    """Every range replica on the node with its keys, as applied locally (no barrier)."""


@message(48)
@attrs.frozen(slots=True)
class PrepareReplicaRequest:
    """Host an empty replica of the range that will join its group."""

    range_id: int


@message(50)
@attrs.frozen(slots=True)
class DropReplicaRequest:
    """Remove the node's replica of the range if the directory no longer lists the node."""

    range_id: int


@message(51)
@attrs.frozen(slots=True)
class SetPeersRequest:
    """Tell a TCP node where its peers listen: ``(node id, host, port)`` each.

    ``peers`` are the raft transport addresses, ``rpc_peers`` the RPC ports the
    node's host reaches other hosts through (to read the directory).
    """

    peers: tuple[tuple[int, str, int], ...]
    rpc_peers: tuple[tuple[int, str, int], ...] = ()


@message(52)
@attrs.frozen(slots=True)
class TransferLeaderRequest:
    """Hand the range's leadership to ``to_node``; sent to the leader."""

    range_id: int
    to_node: int


# Opcode 54 was DirectoryReplicasRequest (UpdateReplicas only); a host sends
# its UpdateReplicas in a DirectoryCommandRequest now, like its other commands.
@message(57)
@attrs.frozen(slots=True)
class DirectoryCommandRequest:
    """Propose ``command`` (a packed ``AllocateRangeIds``, ``RecordSplit`` or ``UpdateReplicas``).

    How a host without a directory replica splits the ranges it leads, finishes
    their interrupted splits and records their moves; other commands are refused.
    """

    command: bytes


@message(55)
@attrs.frozen(slots=True)
class BootstrapRequest:
    """Create the directory and the first range on these nodes (idempotent)."""

    replicas: tuple[int, ...]


@message(56)
@attrs.frozen(slots=True)
class MoveReplicaRequest:
    """Move the range's replica from ``from_node`` to ``to_node``; sent to its leader.

    Answered :class:`Ok` once the move is recorded in the range and the directory
    lists ``to_node``; the leader then carries the move out in the background.
    """

    range_id: int
    from_node: int
    to_node: int


# ------------------------------------------------------------------- replies


@message(60)
@attrs.frozen(slots=True)
class NotLeader:
    """This node does not lead the range; ``leader`` is the one it knows of (0: none)."""

    range_id: int
    leader: int


@message(61)
@attrs.frozen(slots=True)
class NotHosted:
    """This node does not host the range (any more)."""

    range_id: int


@message(62)
@attrs.frozen(slots=True)
class Unavailable:
    """The request did not complete; ``ambiguous`` when a write may still apply."""

    reason: str
    ambiguous: bool = False


@message(63)
@attrs.frozen(slots=True)
class DescriptorReply:
    """A range descriptor (None: the directory is not initialized yet)."""

    descriptor: RangeDescriptor | None


@message(64)
@attrs.frozen(slots=True)
class RangesReply:
    """Every range of the directory, in key order, and their placements."""

    descriptors: tuple[RangeDescriptor, ...]
    placements: tuple[Placement, ...] = ()


@message(65)
@attrs.frozen(slots=True)
class StatsReply:
    """Counters of one node (``stats`` holds the node's and the host's)."""

    node_id: int
    stats: dict[str, int]


@message(66)
@attrs.frozen(slots=True)
class RangeDump:
    """One range replica: its descriptor (None: not ready), applied index and keys."""

    range_id: int
    descriptor: RangeDescriptor | None
    applied: int
    items: tuple[tuple[bytes, bytes], ...]


@message(67)
@attrs.frozen(slots=True)
class DumpReply:
    """Every range replica hosted by ``node_id``."""

    node_id: int
    ranges: tuple[RangeDump, ...]


@message(68)
@attrs.frozen(slots=True)
class Ok:
    """The request was carried out."""
