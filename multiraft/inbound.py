"""What arrives from other nodes: frames fanned out to groups, snapshot outcomes, refusals.

The receiver task only queues what the transport delivers; the driver hands it
to the groups here, between ticks and ready cycles. Coalesced heartbeat records
become the raft messages their groups expect. A message for a group this node
does not host goes to the unknown-group policy; one for a removed group meets
its tombstone. A group whose raft rejects a message as impossible (a hostile or
broken peer) is stopped alone: the node and its other groups carry on. A vote
request from an older term, which raft drops, may be answered here instead
(see :mod:`multiraft.older_term_votes`).
"""

from __future__ import annotations

import logging

from multiraft.config import UnknownGroupPolicy
from multiraft.frames import Frame, HeartbeatRecord, SnapshotOutcome
from multiraft.groups import GroupTable
from multiraft.heartbeats import (
    QUIESCE_CONTEXT,
    Outbox,
    heartbeat_message,
    heartbeat_response_message,
)
from multiraft.older_term_votes import campaigns_again_at_once, rejection_of_older_vote
from multiraft.quiescence import follower_may_quiesce
from multiraft.raft.errors import RaftError
from multiraft.raft.types import Message, MessageType, SnapshotStatus, is_response_msg
from multiraft.replica import Replica

__all__ = ["Inbound"]

_log = logging.getLogger("multiraft.node")

_SNAP = MessageType.SNAP
_VOTE = MessageType.VOTE
_VOTE_RESP = MessageType.VOTE_RESP
#: Answers that need no action from a group at rest: stepping one into a
#: quiesced group wakes it only if it gave raft something to do.
_ANSWERS = frozenset((MessageType.APP_RESP, MessageType.HEARTBEAT_RESP))


class Inbound:
    """Frames and snapshot outcomes received, waiting for the driver."""

    __slots__ = ("_outbox", "_table", "items")

    def __init__(self, table: GroupTable, outbox: Outbox) -> None:
        self._table = table
        #: Where the answers the coordinator gives for raft go (see :meth:`step`).
        self._outbox = outbox
        #: Received and not yet handled, in arrival order.
        self.items: list[Frame | SnapshotOutcome] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def process(self) -> None:
        """Hand everything received so far to the groups."""
        if not self.items:
            return
        items = self.items
        self.items = []
        table = self._table
        c = table.counters
        liveness = table.liveness
        replicas = table.replicas
        for item in items:
            if isinstance(item, SnapshotOutcome):
                self._on_snapshot_outcome(item)
                continue
            c.frames_received += 1
            liveness.heard(item.from_node, table.tick)
            c.messages_received += item.message_count()
            for rec in item.heartbeats:
                self._on_heartbeat(rec)
            for rec in item.heartbeat_responses:
                self._on_heartbeat_response(rec)
            for gm in item.messages:
                r = replicas.get(gm.group_id)
                if r is None:
                    self.on_unknown_group(gm.group_id, gm.message)
                else:
                    self.step(r, gm.message)

    def process_failed_sends(self, failed: list[tuple[int, Frame]]) -> None:
        """Tell the groups of refused frames that the destination is unreachable."""
        replicas = self._table.replicas
        sends = self._table.snapshot_sends
        dirty = self._table.dirty
        for to, frame in failed:
            reported: set[int] = set()
            for gm in frame.messages:
                r = replicas.get(gm.group_id)
                if r is None or r.failed is not None:
                    continue
                rn = r.rawnode
                if gm.message.type is _SNAP:
                    sends.finished(gm.group_id)
                    rn.report_snapshot(to, SnapshotStatus.FAILURE)
                if gm.group_id not in reported:
                    reported.add(gm.group_id)
                    rn.report_unreachable(to)
                dirty[r] = None

    def _on_snapshot_outcome(self, outcome: SnapshotOutcome) -> None:
        table = self._table
        table.snapshot_sends.finished(outcome.group_id)
        r = table.replicas.get(outcome.group_id)
        if r is not None and r.failed is None:
            r.rawnode.report_snapshot(outcome.to_node, outcome.status)
            table.wake(r)
            table.dirty[r] = None

    # --------------------------------------------------------- heartbeats

    def _on_heartbeat(self, rec: HeartbeatRecord) -> None:
        table = self._table
        r = table.replicas.get(rec.group_id)
        if r is None:
            self.on_unknown_group(rec.group_id, heartbeat_message(rec))
            return
        if rec.to != table.node_id:
            table.counters.dropped_messages += 1
            return
        if not self._step_raw(r, heartbeat_message(rec)):
            return
        if rec.quiesce and follower_may_quiesce(r, rec):
            table.quiesce(r)
        else:
            table.wake(r)

    def _on_heartbeat_response(self, rec: HeartbeatRecord) -> None:
        r = self._table.replicas.get(rec.group_id)
        if r is None:
            self.on_unknown_group(rec.group_id, heartbeat_response_message(rec))
            return
        if rec.quiesce and r.quiesced:
            # The follower confirms a quiesce we asked for: nothing to do, stay asleep.
            return
        self.step(r, heartbeat_response_message(rec))
        if rec.context == QUIESCE_CONTEXT and not rec.quiesce and r.failed is None:
            # The follower refused to quiesce: keep the group awake to heartbeat it.
            self._table.wake(r)

    # -------------------------------------------------------------- steps

    def step(self, r: Replica, m: Message) -> None:
        """Step ``m`` into ``r``'s raft (if it is addressed here) and wake the group."""
        table = self._table
        if m.to != table.node_id:
            table.counters.dropped_messages += 1
            return
        t = m.type
        again = t is _VOTE_RESP and r.failed is None and campaigns_again_at_once(m, r.rawnode.raft)
        if not self._step_raw(r, m):
            return
        if t is _VOTE:
            # Raft drops an older vote request unanswered (see older_term_votes).
            answer = rejection_of_older_vote(m, r.rawnode.raft)
            if answer is not None:
                self._outbox.add(r.group_id, answer)
        elif again:
            r.campaign()
        if r.quiesced and m.type in _ANSWERS and not r.rawnode.has_ready():
            # A late answer to something sent before the group quiesced.
            return
        table.wake(r)

    def _step_raw(self, r: Replica, m: Message) -> bool:
        """Step ``m``; False if it was dropped (refused, or the group is stopped)."""
        table = self._table
        if r.failed is not None:
            table.counters.dropped_messages += 1
            return False
        try:
            r.rawnode.step(m)
        except RaftError as exc:
            # A forwarded proposal without a leader, a response from a removed peer:
            # dropping it is what raft expects; the sender retries or times out.
            table.counters.dropped_messages += 1
            _log.debug("group %d: dropped %s from %d: %s", r.group_id, m.type.name, m.from_, exc)
            return False
        except AssertionError as exc:
            # Raft met an input it deems impossible (for instance an append that
            # conflicts with committed entries): its state is not to be trusted any
            # more. Stop this group alone; the node and its other groups carry on.
            table.counters.dropped_messages += 1
            _log.error(
                "group %d: %s from node %d broke an invariant", r.group_id, m.type.name, m.from_
            )
            table.fail(r, exc)
            return False
        table.dirty[r] = None
        return True

    # ------------------------------------------------------- unknown groups

    def on_unknown_group(self, group_id: int, m: Message) -> None:
        """Apply the unknown-group policy to ``m`` (tombstoned groups drop it)."""
        table = self._table
        c = table.counters
        c.unknown_group_messages += 1
        unknown = table.unknown
        if group_id in unknown.tombstones:
            c.tombstoned_messages += 1
            return
        config = table.config
        policy = config.unknown_group_policy
        if policy is UnknownGroupPolicy.BUFFER:
            unknown.hold(group_id, m)
            return
        if (
            policy is UnknownGroupPolicy.CREATE
            and not is_response_msg(m.type)
            and m.to == table.node_id
            and len(table.uninitialized) < config.unknown_group_create_limit
        ):
            factory = config.state_machine_factory
            assert factory is not None  # NodeConfig validation guarantees it
            r = table.host(group_id, factory(group_id), None, lazily=True)
            c.unknown_groups_created += 1
            self.step(r, m)
            return
        c.dropped_messages += 1
