"""How a node's :class:`~examples.rangekv.host.RangeHost` answers client requests.

Data requests go to the range's leader: a node that knows another leader
answers :class:`NotLeader` with it, one that does not host the range
:class:`NotHosted`. Writes that cannot apply (the key left the range, or the
range is not initialized yet) are answered without a trip through the log;
reads run a read barrier first (bounded by ``RangeSettings.read_timeout``).
Errors of the node become replies, so callers see one reply type per outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from examples.rangekv.commands import (
    CLIENT_WRITE_OPCODES,
    HOST_DIRECTORY_OPCODES,
    CompareAndSet,
    Delete,
    Put,
    Refused,
)
from examples.rangekv.descriptor import DIRECTORY_ID
from examples.rangekv.protocol import (
    BootstrapRequest,
    DescriptorReply,
    DirectoryCommandRequest,
    DropReplicaRequest,
    DumpRequest,
    GetRequest,
    LookupRequest,
    MoveReplicaRequest,
    NotHosted,
    NotLeader,
    Ok,
    PrepareReplicaRequest,
    RangesReply,
    RangesRequest,
    ScanRequest,
    SplitRequest,
    StatsReply,
    StatsRequest,
    TransferLeaderRequest,
    Unavailable,
    WriteRequest,
)
from examples.rangekv.wire import CodecError, opcode_of, unpack
from multiraft import (
    GroupNotFoundError,
    GroupRemovedError,
    NodeClosedError,
    NotLeaderError,
    ProposalDroppedError,
    ProposalTimeoutError,
)

if TYPE_CHECKING:
    from examples.rangekv.host import RangeHost

__all__ = ["answer"]


async def answer(host: RangeHost, request: object) -> object:
    """The reply of ``host`` to one request of :mod:`examples.rangekv.protocol`."""
    try:
        return await _dispatch(host, request)
    except (GroupNotFoundError, GroupRemovedError) as exc:
        return NotHosted(exc.group_id)
    except NotLeaderError as exc:
        return NotLeader(exc.group_id, exc.leader_hint or 0)
    except ProposalDroppedError as exc:
        return Unavailable(str(exc))
    except (ProposalTimeoutError, NodeClosedError) as exc:
        return Unavailable(str(exc), ambiguous=True)
    except CodecError as exc:
        return Refused(f"malformed command: {exc}")


def redirect(host: RangeHost, range_id: int) -> NotHosted | NotLeader | None:
    """Why ``host`` should not serve ``range_id`` (None: it may)."""
    if range_id not in host.ranges:
        return NotHosted(range_id)
    leader = host.node.leader_of(range_id)
    if leader is not None and leader != host.node_id:
        return NotLeader(range_id, leader)
    return None


async def _read_barrier(host: RangeHost, group_id: int) -> Unavailable | None:
    with trio.move_on_after(host.settings.read_timeout):
        await host.node.read(group_id)
        return None
    return Unavailable(f"read barrier on group {group_id} timed out")


async def _write(host: RangeHost, rid: int, command: bytes) -> object:
    if opcode_of(command) not in CLIENT_WRITE_OPCODES:
        return Refused("only Put, Delete and CompareAndSet may be sent by clients")
    if (elsewhere := redirect(host, rid)) is not None:
        return elsewhere
    write = unpack(command)
    assert isinstance(write, Put | Delete | CompareAndSet)  # by its opcode
    # Ranges only shrink: a key outside the range now will be outside at apply time.
    refusal = host.ranges[rid].check_key(write.key)
    return refusal or await host.node.propose(rid, command)


async def _dispatch(host: RangeHost, request: object) -> object:
    node = host.node
    match request:
        case WriteRequest(range_id=rid, command=command):
            return await _write(host, rid, command)
        case GetRequest(range_id=rid, key=key):
            blocked = redirect(host, rid) or await _read_barrier(host, rid)
            return blocked or host.ranges[rid].get(key)
        case ScanRequest(range_id=rid, start=start, end=end, limit=limit):
            blocked = redirect(host, rid) or await _read_barrier(host, rid)
            return blocked or host.ranges[rid].scan(start, end, max(1, limit))
        case LookupRequest(key=key):
            blocked_dir = await _read_barrier(host, DIRECTORY_ID)
            return blocked_dir or DescriptorReply(host.directory.lookup(key))
        case RangesRequest(consistent=consistent):
            if not consistent and not host.directory.ready:
                return NotHosted(DIRECTORY_ID)
            if consistent and (blocked_dir := await _read_barrier(host, DIRECTORY_ID)):
                return blocked_dir
            directory = host.directory
            placements = tuple(directory.placements[r] for r in sorted(directory.placements))
            return RangesReply(tuple(directory.descriptors()), placements)
        case SplitRequest(range_id=rid, key=key):
            return redirect(host, rid) or await host.split_range(rid, key)
        case StatsRequest():
            return StatsReply(host.node_id, host.stats())
        case DumpRequest():
            return host.dump()
        case PrepareReplicaRequest(range_id=rid):
            if await host.join_range(rid):
                return Ok()
            return Refused(f"node {host.node_id} removed its replica of range {rid} before")
        case MoveReplicaRequest(range_id=rid, from_node=source, to_node=target):
            return redirect(host, rid) or await host.start_move(rid, source, target)
        case DropReplicaRequest(range_id=rid):
            return await host.collect_replica(rid)
        case TransferLeaderRequest(range_id=rid, to_node=to_node):
            if (elsewhere := redirect(host, rid)) is not None:
                return elsewhere
            await node.transfer_leadership(rid, to_node)
            return Ok()
        case DirectoryCommandRequest(command=command):
            if opcode_of(command) not in HOST_DIRECTORY_OPCODES:
                return Refused("only AllocateRangeIds, RecordSplit and UpdateReplicas are accepted")
            unpack(command)  # a malformed body is refused here, not applied
            return await node.propose(DIRECTORY_ID, command)
        case BootstrapRequest(replicas=replicas):
            await host.bootstrap(tuple(replicas))
            await host.wait_ready()
            return Ok()
    return Refused(f"unknown request {type(request).__name__}")
