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
    CompareAndSet,
    Delete,
    Put,
    Refused,
    SetReplicas,
    UpdateReplicas,
)
from examples.rangekv.protocol import (
    BootstrapRequest,
    DescriptorReply,
    DirectoryReplicasRequest,
    DropReplicaRequest,
    DumpRequest,
    GetRequest,
    LookupRequest,
    MembershipRequest,
    NotHosted,
    NotLeader,
    Ok,
    PrepareReplicaRequest,
    RangesReply,
    RangesRequest,
    ScanRequest,
    SetRangeReplicasRequest,
    SplitRequest,
    StatsReply,
    StatsRequest,
    TransferLeaderRequest,
    Unavailable,
    WriteRequest,
)
from examples.rangekv.wire import CodecError, opcode_of, pack, unpack
from multiraft import (
    GroupNotFoundError,
    GroupRemovedError,
    NodeClosedError,
    NotLeaderError,
    ProposalDroppedError,
    ProposalTimeoutError,
)
from multiraft.raft import ConfChange, ConfChangeType

if TYPE_CHECKING:
    from examples.rangekv.host import RangeHost

__all__ = ["answer"]

#: Group id of the directory (repeated from ``host`` to avoid an import cycle).
_DIRECTORY_ID = 1


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
            blocked_dir = await _read_barrier(host, _DIRECTORY_ID)
            return blocked_dir or DescriptorReply(host.directory.lookup(key))
        case RangesRequest():
            blocked_dir = await _read_barrier(host, _DIRECTORY_ID)
            return blocked_dir or RangesReply(tuple(host.directory.descriptors()))
        case SplitRequest(range_id=rid, key=key):
            return redirect(host, rid) or await host.split_range(rid, key)
        case StatsRequest():
            return StatsReply(host.node_id, host.stats())
        case DumpRequest():
            return host.dump()
        case PrepareReplicaRequest(range_id=rid):
            await host.join_range(rid)
            return Ok()
        case MembershipRequest(range_id=rid, add=add, remove=remove):
            if (elsewhere := redirect(host, rid)) is not None:
                return elsewhere
            if add:
                await node.change_membership(rid, ConfChange(ConfChangeType.ADD_NODE, add))
            if remove:
                await node.change_membership(rid, ConfChange(ConfChangeType.REMOVE_NODE, remove))
            return Ok()
        case DropReplicaRequest(range_id=rid):
            await node.remove_group(rid)
            host.forget_range(rid)
            return Ok()
        case TransferLeaderRequest(range_id=rid, to_node=to_node):
            if (elsewhere := redirect(host, rid)) is not None:
                return elsewhere
            await node.transfer_leadership(rid, to_node)
            return Ok()
        case SetRangeReplicasRequest(range_id=rid, replicas=replicas, changing=changing):
            command = pack(SetReplicas(tuple(replicas), changing))
            return redirect(host, rid) or await node.propose(rid, command)
        case DirectoryReplicasRequest(range_id=rid, replicas=replicas):
            return await node.propose(_DIRECTORY_ID, pack(UpdateReplicas(rid, tuple(replicas))))
        case BootstrapRequest(replicas=replicas):
            await host.bootstrap(tuple(replicas))
            await host.wait_ready()
            return Ok()
    return Refused(f"unknown request {type(request).__name__}")
