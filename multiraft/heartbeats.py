"""Coalescing raft heartbeats into per-node records, and fanning records back out.

Raft wants one HEARTBEAT per (group, follower) per heartbeat interval; a node
hosting thousands of groups would send thousands of messages to each peer per
tick. Instead, the ready loop routes every outgoing message through an
:class:`Outbox`: heartbeats and their responses become small records in the one
frame per destination, and the receiver turns each record back into the raft
message its group expects.
"""

from __future__ import annotations

from multiraft.frames import Frame, GroupMessage, HeartbeatRecord
from multiraft.raft.types import Message, MessageType

__all__ = ["QUIESCE_CONTEXT", "Outbox", "heartbeat_message", "heartbeat_response_message"]

#: Context of a leader's quiesce heartbeat. Raft echoes a heartbeat's context in
#: its response, so a response carrying it without the quiesce flag tells the
#: leader that this follower refused to quiesce (the group must stay awake),
#: while a response without it is an answer to an older heartbeat. Read requests
#: use 16-byte contexts, so the two never meet.
QUIESCE_CONTEXT = b"\x00quiesce"

_HEARTBEAT = MessageType.HEARTBEAT
_HEARTBEAT_RESP = MessageType.HEARTBEAT_RESP
_SNAP = MessageType.SNAP


class Outbox:
    """The frames of one ready cycle being assembled, one per destination node."""

    __slots__ = ("frames", "heartbeats_coalesced", "node_id", "snapshots")

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.frames: dict[int, Frame] = {}
        #: Heartbeats and responses routed as records (the sender takes and resets it).
        self.heartbeats_coalesced = 0
        #: Snapshot messages routed (the sender takes and resets it).
        self.snapshots = 0

    def frame(self, to_node: int) -> Frame:
        """The frame for ``to_node``, created on first use."""
        f = self.frames.get(to_node)
        if f is None:
            f = self.frames[to_node] = Frame(self.node_id, to_node)
        return f

    def add(self, group_id: int, m: Message, quiesced: bool = False) -> None:
        """Route ``m``; a heartbeat response from a quiesced group says so."""
        t = m.type
        if t is _HEARTBEAT:
            self.frame(m.to).heartbeats.append(
                HeartbeatRecord(group_id, m.from_, m.to, m.term, m.commit, m.context)
            )
            self.heartbeats_coalesced += 1
        elif t is _HEARTBEAT_RESP:
            self.frame(m.to).heartbeat_responses.append(
                HeartbeatRecord(group_id, m.from_, m.to, m.term, m.commit, m.context, quiesced)
            )
            self.heartbeats_coalesced += 1
        else:
            if t is _SNAP:
                self.snapshots += 1
            self.frame(m.to).messages.append(GroupMessage(group_id, m))

    def add_quiesce(self, group_id: int, from_: int, to: int, term: int, commit: int) -> None:
        """A leader's heartbeat asking ``to`` to quiesce ``group_id``."""
        self.frame(to).heartbeats.append(
            HeartbeatRecord(group_id, from_, to, term, commit, QUIESCE_CONTEXT, True)
        )
        self.heartbeats_coalesced += 1

    def take(self) -> dict[int, Frame]:
        """The assembled frames; the outbox starts empty again."""
        frames = self.frames
        self.frames = {}
        return frames


def heartbeat_message(rec: HeartbeatRecord) -> Message:
    """The raft HEARTBEAT a record stands for."""
    return _record_message(rec, _HEARTBEAT)


def heartbeat_response_message(rec: HeartbeatRecord) -> Message:
    """The raft HEARTBEAT_RESP a record stands for."""
    return _record_message(rec, _HEARTBEAT_RESP)


def _record_message(rec: HeartbeatRecord, t: MessageType) -> Message:
    return Message(
        type=t, to=rec.to, from_=rec.from_, term=rec.term, commit=rec.commit, context=rec.context
    )
