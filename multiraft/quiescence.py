"""When a group may stop ticking: the leader's test and the follower's check.

A quiesced group costs nothing per tick. The leader decides (everything
replicated, committed and applied, nothing pending); the follower only agrees
when the leader's quiesce heartbeat matches its own view of term, leader and log.
"""

from __future__ import annotations

from multiraft.frames import HeartbeatRecord
from multiraft.raft.types import StateType
from multiraft.replica import Replica

__all__ = ["follower_may_quiesce", "leader_may_quiesce"]

_LEADER = StateType.LEADER
_FOLLOWER = StateType.FOLLOWER


def leader_may_quiesce(r: Replica, dead_peers: set[int]) -> bool:
    """Whether leader replica ``r`` may quiesce its group now.

    The leader must still be a voter of its group; every follower must have
    matched the last index, on a live node; everything must be committed and
    applied; no proposal, read, conf change or leadership transfer may be pending.
    """
    rn = r.rawnode
    raft = rn.raft
    if raft.state is not _LEADER or r.has_pending_requests or r.pending_write is not None:
        return False
    log = raft.raft_log
    last = log.last_index()
    if log.committed != last or log.applied != last or r.applied != last:
        return False
    if raft.pending_conf_index > last or raft.lead_transferee or raft.read_only.pending:
        return False
    if raft.pending_read_index_messages or rn.has_ready():
        return False
    self_id = raft.id
    progress = raft.trk.progress
    own = progress.get(self_id)
    if own is None or own.is_learner:
        # A leader that applied its own removal leads on (etcd keeps it leading)
        # until its host collects the replica; its followers must then elect a
        # successor, which they cannot do asleep under it.
        return False
    for pid, pr in progress.items():
        if pid != self_id and (pr.match != last or pid in dead_peers):
            return False
    return True


def follower_may_quiesce(r: Replica, rec: HeartbeatRecord) -> bool:
    """Whether follower replica ``r`` may obey the quiesce heartbeat ``rec``.

    Call after stepping the heartbeat: the term and leader must be the ones in
    the record, the leader a voter of the membership this replica applied, and
    the follower's log must end exactly at the leader's commit index, all of it
    committed.
    """
    raft = r.rawnode.raft
    if raft.state is not _FOLLOWER or raft.term != rec.term or raft.lead != rec.from_:
        return False
    leader = raft.trk.progress.get(rec.from_)
    if leader is None or leader.is_learner:
        # Not a voter in the membership this replica applied (removed, or being
        # replaced): once it is gone, nobody would wake this group again.
        return False
    log = raft.raft_log
    return (
        log.last_index() == rec.commit
        and log.committed == rec.commit
        and not r.has_pending_requests
    )
