"""Coalescing raft heartbeats into per-node records, and fanning records back out.

Raft wants one HEARTBEAT per (group, follower) per heartbeat interval; a node
hosting thousands of groups would send thousands of messages to each peer per
tick. Instead, the ready loop routes every outgoing message through an
:class:`Outbox`: heartbeats and their responses become small records in the one
frame per destination, and the receiver turns each record back into the raft
message its group expects.

The outbox also leaves out a plain heartbeat to a follower that the group sent
an append in the previous heartbeat interval. An append tells a follower all a
heartbeat would (leader, term, a commit index at least as high: its election
timer restarts), and the follower's answer tells the leader all a heartbeat
response would (it is alive and active, for check-quorum), so raft loses
nothing it relies on; it treats the skipped heartbeat like a lost message. With
many groups each committing now and then, those heartbeats and their responses
were half of all messages between nodes. A follower hears from its leader at
least every ``3 * heartbeat_ticks`` ticks even so (an append in one interval,
no heartbeat in the next, one in the interval after), so the outbox skips
heartbeats only when that is less than ``election_ticks``. Heartbeats carrying
a context (read requests, quiesce requests) always leave. A follower's answer
agreeing to quiesce stays home too: its leader quiesced when it asked and only
needs to hear of a refusal.
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

_APP = MessageType.APP
_HEARTBEAT = MessageType.HEARTBEAT
_HEARTBEAT_RESP = MessageType.HEARTBEAT_RESP
_SNAP = MessageType.SNAP


class Outbox:
    """The frames of one ready cycle being assembled, one per destination node."""

    __slots__ = (
        "_appended",
        "_appended_before",
        "frames",
        "heartbeats_coalesced",
        "heartbeats_skipped",
        "node_id",
        "skips_heartbeats",
        "snapshots",
    )

    def __init__(self, node_id: int, skips_heartbeats: bool = False) -> None:
        """``skips_heartbeats``: leave out heartbeats made redundant by recent appends."""
        self.node_id = node_id
        self.frames: dict[int, Frame] = {}
        #: Heartbeats and responses routed as records (the sender takes and resets it).
        self.heartbeats_coalesced = 0
        #: Heartbeats left out after an append in the previous interval, and answers
        #: that only agreed to quiesce (taken and reset).
        self.heartbeats_skipped = 0
        #: Snapshot messages routed (the sender takes and resets it).
        self.snapshots = 0
        self.skips_heartbeats = skips_heartbeats
        # (group, follower) pairs sent an append in this heartbeat interval, and in
        # the one before.
        self._appended: set[tuple[int, int]] = set()
        self._appended_before: set[tuple[int, int]] = set()

    def new_heartbeat_interval(self) -> None:
        """Start the next heartbeat interval (every ``heartbeat_ticks`` ticks, before
        the groups tick)."""
        self._appended_before = self._appended
        self._appended = set()

    def note_append(self, group_id: int, to: int) -> None:
        """``group_id`` sent an append to ``to`` outside :meth:`add` (it left early)."""
        if self.skips_heartbeats:
            self._appended.add((group_id, to))

    def frame(self, to_node: int) -> Frame:
        """The frame for ``to_node``, created on first use."""
        f = self.frames.get(to_node)
        if f is None:
            f = self.frames[to_node] = Frame(self.node_id, to_node)
        return f

    def add(self, group_id: int, m: Message, quiesced: bool = False) -> None:
        """Route ``m``; a heartbeat response from a quiesced group says so."""
        t = m.type
        if t is _APP:
            if self.skips_heartbeats:
                self._appended.add((group_id, m.to))
            self.frame(m.to).messages.append(GroupMessage(group_id, m))
        elif t is _HEARTBEAT:
            if (
                self.skips_heartbeats
                and not m.context
                and (group_id, m.to) in self._appended_before
            ):
                self.heartbeats_skipped += 1
                return
            self.frame(m.to).heartbeats.append(
                HeartbeatRecord(group_id, m.from_, m.to, m.term, m.commit, m.context)
            )
            self.heartbeats_coalesced += 1
        elif t is _HEARTBEAT_RESP:
            if quiesced and m.context == QUIESCE_CONTEXT:
                # The follower agreed to quiesce: its leader, asleep already, would
                # only drop the answer (a refusal, sent awake, still goes).
                self.heartbeats_skipped += 1
                return
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
