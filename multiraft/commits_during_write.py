"""A leader's acknowledgements handled while its ready cycle waits for the log write.

A ready cycle hands its batch to the log engine and waits for it (in a worker
thread for a durable engine: a millisecond or more under load). Without this
module every frame that arrives meanwhile waits for the write too, and so does
each commit those frames complete: on a busy loopback leader nine frames in
ten arrived during a write and waited 1.1 ms at the median, 3.6 ms at the 99th
percentile. The receiver task instead hands such a frame here, and when it
holds nothing but successful append acknowledgements for groups this node
leads, they are stepped at once, and the commands they commit are applied and
answered without waiting for the write to return.

Why nothing unsafe can leave: raft counts the leader's own copy of an entry
as soon as it is appended, so a follower's acknowledgement of an entry in the
write still in flight may raise the commit index past what this node
persisted. That commit index stays inside the node until the write returns:

* no message leaves (stepping only queues raft's messages; the next ready
  cycle, after the write, sends them);
* only entries durable on a quorum are applied: those this node persisted in
  an earlier cycle (below the group's first unstable entry), and past them
  those a quorum of voters acknowledged with this node's own copy not counted
  (:func:`durable_quorum_index`; in a group of three, both followers), so a
  leader whose own write is slow answers as soon as its followers persisted.
  Only commands up to the first membership change are applied, as
  :meth:`~multiraft.applying.Applier.apply_persisted` does before a write.
  The hard state recording the commit index is written by the next cycle,
  after the write in flight, so no restarted node finds a commit index past
  its log;
* a group whose ``Ready`` of this cycle still has committed entries to apply
  after the write is only stepped, not applied, so entries are applied once
  and in order.

Everything else in a frame (votes, appends to a follower, rejections,
heartbeats, snapshots, messages of another term, groups asleep, failed,
damaged or applying in a thread) makes the whole frame wait for the write as
before, so a frame's messages are never reordered; nor does a frame overtake
an earlier one from the same node still waiting.

Appends for commands proposed during the write are not sent during it: tried,
that doubled the frames, follower cycles and syncs per command, and the
leader's CPU saturated before its latency improved (see the issue notes).
"""

from __future__ import annotations

from multiraft.applying import Applier
from multiraft.frames import Frame
from multiraft.groups import GroupTable
from multiraft.inbound import Inbound
from multiraft.log_writer import LogWriter
from multiraft.ports import WriteBatch
from multiraft.raft.raft import Raft
from multiraft.raft.rawnode import Ready
from multiraft.raft.types import MessageType, StateType
from multiraft.replica import Replica

__all__ = ["CommitsDuringWrite", "durable_quorum_index"]

_APP_RESP = MessageType.APP_RESP
_LEADER = StateType.LEADER


class CommitsDuringWrite:
    """Steps a leader's acknowledgements that arrive while its cycle's write is in flight."""

    __slots__ = ("_applier", "_apply_after_write", "_inbound", "_table", "writing")

    def __init__(self, table: GroupTable, inbound: Inbound, applier: Applier) -> None:
        self._table = table
        self._inbound = inbound
        self._applier = applier
        #: True while the ready cycle waits for its write in a worker thread.
        self.writing = False
        # Groups whose Ready of the cycle in flight applies entries after the write.
        self._apply_after_write: set[Replica] = set()

    async def write(
        self,
        writer: LogWriter,
        batch: WriteBatch,
        work: list[tuple[Replica, Ready]],
        applied_before: dict[Replica, int] | None,
    ) -> None:
        """Write the cycle's ``batch`` with :meth:`take` open to the receiver meanwhile.

        ``work`` is the cycle's groups and their Readys; ``applied_before`` how many
        leading committed entries of each it applied before the write. Groups with
        committed entries left to apply after the write are only stepped.
        """
        after = self._apply_after_write
        for r, rd in work:
            ents = rd.committed_entries
            if rd.snapshot is not None or (
                ents and (applied_before is None or applied_before.get(r, 0) < len(ents))
            ):
                after.add(r)
        self.writing = True
        try:
            await writer.write(batch)
        finally:
            self.writing = False
            after.clear()

    def take(self, frame: Frame) -> bool:
        """Handle ``frame`` now if the write is in flight and it holds only acknowledgements
        a leader may step at once; False leaves it for the driver (after the write).

        Earlier frames from the same node still queued for the driver (they
        arrived before the write began) are taken first, in order; if one of
        them must wait, so does ``frame``.
        """
        if not self.writing:
            return False
        inbound = self._inbound
        sender = frame.from_node
        earlier = [w for w in inbound.items if isinstance(w, Frame) and w.from_node == sender]
        if earlier:
            taken: set[int] = set()
            for waiting in earlier:
                if not self._step_now(waiting):
                    if taken:
                        inbound.items = [w for w in inbound.items if id(w) not in taken]
                    return False
                taken.add(id(waiting))
            inbound.items = [w for w in inbound.items if id(w) not in taken]
        return self._step_now(frame)

    def _step_now(self, frame: Frame) -> bool:
        """Step ``frame`` if it holds only acknowledgements a leader may take now."""
        if frame.heartbeats or frame.heartbeat_responses:
            return False
        table = self._table
        messages = frame.messages
        if not messages:
            # A keepalive only proves its sender alive.
            table.counters.frames_received += 1
            table.liveness.heard(frame.from_node, table.tick)
            return True
        node_id = table.node_id
        # Message kinds first (cheap): a frame that also carries appends for groups
        # its sender leads, as most do with many groups, is refused at once.
        for gm in messages:
            m = gm.message
            if m.type is not _APP_RESP or m.reject or m.to != node_id:
                return False
        replicas = table.replicas
        groups: list[Replica] = []
        for gm in messages:
            m = gm.message
            r = replicas.get(gm.group_id)
            if (
                r is None
                or r.quiesced
                or r.dormant is not None
                or r.removed
                or r.failed is not None
                or r.corrupt
                or r.blocking
                or r.applying is not None
            ):
                return False
            raft = r.rawnode.raft
            if (
                raft.state is not _LEADER
                or m.term != raft.term
                or m.from_ not in raft.trk.progress
                or raft.raft_log.unstable.snapshot is not None
            ):
                return False
            groups.append(r)
        c = table.counters
        c.frames_received += 1
        c.messages_received += len(messages)
        c.frames_stepped_during_write += 1
        table.liveness.heard(frame.from_node, table.tick)
        step = self._inbound.step
        for gm, r in zip(messages, groups, strict=True):
            step(r, gm.message)
        apply_after_write = self._apply_after_write
        for r in dict.fromkeys(groups):
            if r not in apply_after_write and r.failed is None:
                self._apply_persisted_commits(r)
        return True

    def _apply_persisted_commits(self, r: Replica) -> None:
        raft = r.rawnode.raft
        log = raft.raft_log
        # Entries below the first unstable one were persisted by earlier cycles;
        # past it, those a quorum persisted without counting this node's copy.
        persisted = log.unstable.offset - 1
        hi = min(log.committed, durable_quorum_index(raft, persisted))
        lo = r.applied + 1
        if hi < lo or lo < log.first_index():
            return
        self._applier.apply_committed(r, log.slice(lo, hi + 1))


def durable_quorum_index(raft: Raft, persisted: int) -> int:
    """The highest index a quorum of voters has persisted, counting the leader ``raft``'s
    own log only up to ``persisted`` (never less than ``persisted``).

    Raft counts a leader's copy of an entry from the moment it is appended; an
    acknowledgement from a follower comes only once the follower persisted it.
    So with the leader's own match index lowered to ``persisted``, the quorum
    index is durable on a quorum whatever the leader's write in flight does.
    """
    progress = raft.trk.progress.get(raft.id)
    if progress is None or progress.match <= persisted:
        return persisted
    appended = progress.match
    progress.match = persisted
    try:
        return max(persisted, raft.trk.committed())
    finally:
        progress.match = appended
