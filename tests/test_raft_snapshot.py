"""Snapshots: when the leader sends one, what it does while one is in flight, and how a
follower restores one.

Most tests use leader 1 of (1, 2) at term 2 whose log was compacted through index 10
(snapshot at index 10, term 1) and whose empty entry is index 11; follower 2 starts empty.
"""

from __future__ import annotations

from typing import Any

import pytest

from multiraft.raft import (
    CompactedError,
    Config,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    ProgressState,
    RawNode,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
    SnapshotTemporarilyUnavailableError,
    StateType,
)
from multiraft.raft.raft import Raft
from raft_harness import new_storage, new_test_raft, snapshot_at
from raft_scenarios import (
    SNAPSHOT_INDEX,
    compacted_leader,
    entry_indexes,
    fill_compacted,
    leader_of,
    peer_msg,
    propose,
)
from storage import MemoryStorage

MT = MessageType
PROBE = ProgressState.PROBE
REPLICATE = ProgressState.REPLICATE
SNAPSHOT = ProgressState.SNAPSHOT


class WrappedStorage:
    """A MemoryStorage seen through hooks that tests use to misbehave."""

    def __init__(self, inner: MemoryStorage) -> None:
        self.inner = inner

    def initial_state(self) -> Any:
        """As the wrapped storage."""
        return self.inner.initial_state()

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """As the wrapped storage."""
        return self.inner.entries(lo, hi, max_size)

    def term(self, i: int) -> int:
        """As the wrapped storage."""
        return self.inner.term(i)

    def first_index(self) -> int:
        """As the wrapped storage."""
        return self.inner.first_index()

    def last_index(self) -> int:
        """As the wrapped storage."""
        return self.inner.last_index()

    def snapshot(self) -> Snapshot:
        """As the wrapped storage."""
        return self.inner.snapshot()


class SnapshotBeingBuilt(WrappedStorage):
    """``snapshot()`` raises SnapshotTemporarilyUnavailableError while ``busy``."""

    busy = True

    def snapshot(self) -> Snapshot:
        """Unavailable while busy."""
        if self.busy:
            raise SnapshotTemporarilyUnavailableError("snapshot is being built")
        return self.inner.snapshot()


class CompactsDuringRead(WrappedStorage):
    """Snapshots and compacts through ``at`` right before the first read of ``hook``."""

    def __init__(self, inner: MemoryStorage, hook: str, at: int) -> None:
        super().__init__(inner)
        self.hook = hook
        self.at = at
        self.armed = False

    def _maybe_compact(self, name: str) -> None:
        if self.armed and name == self.hook:
            self.armed = False
            self.inner.create_snapshot(self.at, ConfState(voters=(1, 2)))
            self.inner.compact(self.at)

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Compact first when armed for entries."""
        self._maybe_compact("entries")
        return self.inner.entries(lo, hi, max_size)

    def term(self, i: int) -> int:
        """Compact first when armed for term."""
        self._maybe_compact("term")
        return self.inner.term(i)


def reject_from_empty_follower(leader: Raft) -> None:
    """Follower 2, whose log is empty, rejects the leader's first probe (after index 10)."""
    leader.step(peer_msg(MT.APP_RESP, 2, 1, 2, index=10, reject=True, reject_hint=0, log_term=0))


def only_message(r: Raft) -> Message:
    msgs = r.read_messages()
    assert len(msgs) == 1, msgs
    return msgs[0]


def assert_heartbeat_response_sends_the_snapshot(leader: Raft) -> None:
    """Follower 2 answers a heartbeat; the leader sends it the snapshot at 10."""
    leader.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 2))
    m = only_message(leader)
    assert m.type == MT.SNAP and m.snapshot is not None
    assert m.snapshot.metadata.index == SNAPSHOT_INDEX
    pr = leader.trk.progress[2]
    assert (pr.state, pr.pending_snapshot) == (SNAPSHOT, SNAPSHOT_INDEX)


def leader_sent_snapshot() -> Raft:
    """The compacted leader after it sent follower 2 the snapshot at 10."""
    r = compacted_leader()
    reject_from_empty_follower(r)
    m = only_message(r)
    assert m.type == MT.SNAP
    return r


# ------------------------------------------------------------------ sending


def test_leader_sends_snapshot_when_needed_entries_are_compacted() -> None:
    leader = compacted_leader()
    follower = new_test_raft(2, peers=[1, 2])
    leader.send_append(2)
    probe = only_message(leader)
    assert (probe.type, probe.index, probe.log_term, entry_indexes(probe)) == (MT.APP, 10, 1, [11])
    follower.step(probe)
    rej = only_message(follower)
    assert (rej.type, rej.reject, rej.index, rej.reject_hint, rej.log_term) == (
        MT.APP_RESP,
        True,
        10,
        0,
        0,
    )
    leader.step(rej)
    snap_msg = only_message(leader)
    assert snap_msg.type == MT.SNAP and snap_msg.to == 2 and snap_msg.term == 2
    assert snap_msg.snapshot is not None
    md = snap_msg.snapshot.metadata
    assert (md.index, md.term, md.conf_state.voters) == (10, 1, (1, 2))
    pr = leader.trk.progress[2]
    assert (pr.state, pr.pending_snapshot) == (SNAPSHOT, SNAPSHOT_INDEX)


def test_no_snapshot_for_a_follower_not_recently_active() -> None:
    leader = compacted_leader()
    pr = leader.trk.progress[2]
    pr.next = 5  # needs compacted entries, but has not been heard from this term
    assert not pr.recent_active
    propose(leader)
    assert leader.read_messages() == []
    assert (pr.state, pr.next) == (PROBE, 5)


def test_snapshot_temporarily_unavailable_aborts_the_send_and_a_later_try_sends_it() -> None:
    inner = MemoryStorage()
    fill_compacted(inner)
    storage = SnapshotBeingBuilt(inner)
    leader = leader_of([1, 2], storage)
    pr = leader.trk.progress[2]
    reject_from_empty_follower(leader)
    assert leader.read_messages() == []
    assert (pr.state, pr.next, pr.pending_snapshot, pr.msg_app_flow_paused) == (PROBE, 1, 0, False)
    # Still unavailable: the next trigger gives up again, quietly.
    leader.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 2))
    assert leader.read_messages() == []
    assert (pr.state, pr.pending_snapshot) == (PROBE, 0)
    storage.busy = False
    assert_heartbeat_response_sends_the_snapshot(leader)


def test_nothing_but_heartbeats_goes_to_a_follower_in_snapshot_state() -> None:
    leader = leader_sent_snapshot()
    for _ in range(3):
        propose(leader)
    leader.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 2))
    leader.send_append(2)
    assert leader.read_messages() == []
    leader.step(peer_msg(MT.BEAT, 1, 1, 0))
    assert [(m.type, m.to, m.commit) for m in leader.read_messages()] == [(MT.HEARTBEAT, 2, 0)]
    pr = leader.trk.progress[2]
    assert (pr.state, pr.pending_snapshot, pr.inflights.count()) == (SNAPSHOT, 10, 0)


@pytest.mark.parametrize("hook", ["term", "entries"])
def test_compaction_between_the_leaders_reads_falls_back_to_a_snapshot(hook: str) -> None:
    inner = new_storage([1, 2], entries=[Entry(1, i) for i in range(1, 11)])
    inner.set_hard_state(HardState(term=1, commit=10))
    storage = CompactsDuringRead(inner, hook, at=8)
    leader = leader_of([1, 2], storage)
    pr = leader.trk.progress[2]
    # The follower holds entries up to 4: the leader probes with term(4) and entries(5..).
    leader.step(peer_msg(MT.APP_RESP, 2, 1, 2, index=10, reject=True, reject_hint=4, log_term=1))
    probe = only_message(leader)
    assert (probe.type, probe.index, entry_indexes(probe)) == (MT.APP, 4, list(range(5, 12)))
    # The probe is repeated after a heartbeat response, and this time the log is
    # compacted through 8 in the middle of building it.
    storage.armed = True
    leader.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 2))
    m = only_message(leader)
    assert m.type == MT.SNAP and m.snapshot is not None
    assert (m.snapshot.metadata.index, m.snapshot.metadata.term) == (8, 1)
    assert (pr.state, pr.pending_snapshot) == (SNAPSHOT, 8)
    assert not storage.armed
    assert inner.first_index() == 9


def test_storage_compaction_error_never_escapes_send_append() -> None:
    inner = new_storage([1, 2], entries=[Entry(1, i) for i in range(1, 11)])
    inner.set_hard_state(HardState(term=1, commit=10))
    storage = CompactsDuringRead(inner, "entries", at=10)
    leader = leader_of([1, 2], storage)
    pr = leader.trk.progress[2]
    pr.recent_active = True
    pr.next = 3
    storage.armed = True
    leader.send_append(2)
    m = only_message(leader)
    assert m.type == MT.SNAP and m.snapshot is not None
    assert m.snapshot.metadata.index == 10
    assert (pr.state, pr.pending_snapshot) == (SNAPSHOT, 10)
    with pytest.raises(CompactedError):
        inner.entries(3, 4, 1 << 20)


# ------------------------------------------------------- snapshot reports


def rawnode_leader_sent_snapshot() -> RawNode:
    """The compacted leader inside a RawNode, after sending follower 2 the snapshot."""
    s = MemoryStorage()
    fill_compacted(s)
    rn = RawNode(Config(id=1, storage=s, election_tick=10, heartbeat_tick=1))
    rn.raft.become_candidate()
    rn.raft.become_leader()
    rn.raft.read_messages()
    reject_from_empty_follower(rn.raft)
    assert only_message(rn.raft).type == MT.SNAP
    return rn


def test_snapshot_finish_moves_to_probe_after_the_snapshot_and_waits_for_the_follower() -> None:
    rn = rawnode_leader_sent_snapshot()
    r = rn.raft
    pr = r.trk.progress[2]
    rn.report_snapshot(2, SnapshotStatus.FINISH)
    assert (pr.state, pr.next, pr.match, pr.pending_snapshot) == (PROBE, 11, 0, 0)
    assert pr.msg_app_flow_paused
    assert r.read_messages() == []
    r.send_append(2)
    assert r.read_messages() == []
    # The follower answers a heartbeat: probing resumes right after the snapshot.
    r.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 2))
    m = only_message(r)
    assert (m.type, m.index, m.log_term, entry_indexes(m)) == (MT.APP, 10, 1, [11])
    assert (pr.state, pr.msg_app_flow_paused) == (PROBE, True)


def test_snapshot_finish_then_append_response_moves_to_replicate() -> None:
    rn = rawnode_leader_sent_snapshot()
    r = rn.raft
    pr = r.trk.progress[2]
    rn.report_snapshot(2, SnapshotStatus.FINISH)
    r.step(peer_msg(MT.APP_RESP, 2, 1, 2, index=10))
    assert (pr.state, pr.match) == (REPLICATE, 10)
    m = only_message(r)
    assert (m.type, m.index, entry_indexes(m)) == (MT.APP, 10, [11])
    assert (pr.next, pr.inflights.count()) == (12, 1)


def test_snapshot_failure_forgets_it_and_sends_it_again_later() -> None:
    rn = rawnode_leader_sent_snapshot()
    r = rn.raft
    pr = r.trk.progress[2]
    rn.report_snapshot(2, SnapshotStatus.FAILURE)
    assert (pr.state, pr.next, pr.match, pr.pending_snapshot) == (PROBE, 1, 0, 0)
    assert pr.msg_app_flow_paused
    assert r.read_messages() == []
    assert_heartbeat_response_sends_the_snapshot(r)


def test_snapshot_report_is_ignored_unless_the_follower_is_in_snapshot_state() -> None:
    rn = RawNode(Config(id=1, storage=new_storage([1, 2]), election_tick=10, heartbeat_tick=1))
    r = rn.raft
    r.become_candidate()
    r.become_leader()
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=1))
    r.read_messages()
    pr = r.trk.progress[2]
    for status in (SnapshotStatus.FINISH, SnapshotStatus.FAILURE):
        rn.report_snapshot(2, status)
        assert (pr.state, pr.match, pr.next, pr.msg_app_flow_paused) == (REPLICATE, 1, 2, False)
    assert r.read_messages() == []


def test_append_response_at_the_snapshot_index_moves_snapshot_to_replicate() -> None:
    leader = compacted_leader()
    follower = new_test_raft(2, peers=[1, 2])
    reject_from_empty_follower(leader)
    follower.step(only_message(leader))
    ack = only_message(follower)
    assert (ack.type, ack.reject, ack.index) == (MT.APP_RESP, False, 10)
    leader.step(ack)
    pr = leader.trk.progress[2]
    assert (pr.state, pr.match, pr.pending_snapshot) == (REPLICATE, 10, 0)
    m = only_message(leader)
    assert (m.type, m.index, m.log_term, entry_indexes(m)) == (MT.APP, 10, 1, [11])
    assert (pr.next, pr.inflights.count()) == (12, 1)
    follower.step(m)
    leader.step(only_message(follower))
    assert (pr.state, pr.match, pr.next) == (REPLICATE, 11, 12)
    assert leader.raft_log.committed == 11


def test_append_response_past_the_snapshot_index_moves_snapshot_to_replicate() -> None:
    leader = leader_sent_snapshot()
    leader.step(peer_msg(MT.APP_RESP, 2, 1, 2, index=11))
    pr = leader.trk.progress[2]
    assert (pr.state, pr.match, pr.next, pr.pending_snapshot) == (REPLICATE, 11, 12, 0)
    assert leader.raft_log.committed == 11


def test_append_response_below_the_snapshot_index_keeps_snapshot_state() -> None:
    leader = leader_sent_snapshot()
    leader.step(peer_msg(MT.APP_RESP, 2, 1, 2, index=5))
    pr = leader.trk.progress[2]
    assert (pr.state, pr.match, pr.pending_snapshot) == (SNAPSHOT, 5, 10)
    assert leader.read_messages() == []


# ---------------------------------------------------------- follower restore


def follower_with_log(commit: int) -> Raft:
    """Follower 1 of (1, 2) at term 1 with entries 1..3 of term 1, committed to ``commit``."""
    s = new_storage([1, 2], entries=[Entry(1, 1), Entry(1, 2), Entry(1, 3)])
    s.set_hard_state(HardState(term=1, commit=commit))
    r = new_test_raft(1, 10, 1, s)
    assert (r.raft_log.committed, r.raft_log.last_index()) == (commit, 3)
    return r


def test_restore_ignores_snapshot_at_or_below_commit() -> None:
    r = follower_with_log(commit=2)
    for index in (1, 2):
        assert not r.restore(snapshot_at(index, 1, [1, 2]))
        assert (r.raft_log.committed, r.raft_log.last_index()) == (2, 3)
    assert r.raft_log.unstable.snapshot is None


def test_restore_of_an_entry_already_held_only_fast_forwards_commit() -> None:
    r = follower_with_log(commit=1)
    assert not r.restore(snapshot_at(3, 1, [1, 2, 3]))
    assert (r.raft_log.committed, r.raft_log.last_index()) == (3, 3)
    assert r.raft_log.unstable.snapshot is None
    # Membership is untouched: the log's own conf changes will say what it is.
    assert sorted(r.trk.progress) == [1, 2]


def test_restore_replaces_log_and_membership_otherwise() -> None:
    r = follower_with_log(commit=1)
    snap = snapshot_at(11, 11, [1, 2, 3])
    assert r.restore(snap)
    log = r.raft_log
    assert (log.committed, log.last_index(), log.first_index(), log.last_term()) == (11, 11, 12, 11)
    assert log.unstable.snapshot == snap
    assert r.trk.conf_state().voters == (1, 2, 3)
    assert sorted(r.trk.progress) == [1, 2, 3]


def test_restore_replaces_a_log_whose_term_differs_at_the_snapshot_index() -> None:
    r = follower_with_log(commit=1)
    assert r.restore(snapshot_at(3, 2, [1, 2]))
    assert (r.raft_log.committed, r.raft_log.last_index(), r.raft_log.last_term()) == (3, 3, 2)


def test_restore_of_a_snapshot_that_makes_us_a_learner() -> None:
    r = follower_with_log(commit=1)
    snap = Snapshot(
        metadata=SnapshotMetadata(ConfState(voters=(2, 3), learners=(1,)), index=11, term=11)
    )
    assert r.restore(snap)
    assert r.is_learner
    assert r.trk.progress[1].is_learner
    assert not r.promotable()


def test_snapshot_message_is_restored_and_acknowledged_with_the_new_last_index() -> None:
    r = follower_with_log(commit=1)
    r.step(peer_msg(MT.SNAP, 2, 1, 11, snapshot=snapshot_at(11, 11, [1, 2])))
    assert (r.state, r.term, r.lead) == (StateType.FOLLOWER, 11, 2)
    m = only_message(r)
    assert (m.type, m.to, m.index, m.reject) == (MT.APP_RESP, 2, 11, False)
    assert r.raft_log.committed == 11


def test_snapshot_message_at_or_below_commit_is_answered_with_the_commit_index() -> None:
    r = follower_with_log(commit=2)
    r.step(peer_msg(MT.SNAP, 2, 1, 1, snapshot=snapshot_at(2, 1, [1, 2])))
    m = only_message(r)
    assert (m.type, m.index, m.reject) == (MT.APP_RESP, 2, False)
    assert (r.raft_log.committed, r.raft_log.last_index()) == (2, 3)


def test_snapshot_not_containing_this_node_is_ignored() -> None:
    r = follower_with_log(commit=1)
    assert not r.restore(snapshot_at(11, 11, [2, 3]))
    assert (r.raft_log.committed, r.raft_log.last_index()) == (1, 3)
    assert r.raft_log.unstable.snapshot is None
    assert sorted(r.trk.progress) == [1, 2]
    r.step(peer_msg(MT.SNAP, 2, 1, 11, snapshot=snapshot_at(11, 11, [2, 3])))
    m = only_message(r)
    assert (m.type, m.index, m.reject) == (MT.APP_RESP, 1, False)
    assert (r.raft_log.committed, r.raft_log.last_index()) == (1, 3)


def test_restored_follower_catches_up_from_the_snapshot_through_a_ready() -> None:
    s = MemoryStorage()
    s.set_conf_state(ConfState(voters=(1, 2)))
    rn = RawNode(Config(id=2, storage=s, election_tick=10, heartbeat_tick=1))
    rn.step(peer_msg(MT.SNAP, 1, 2, 2, snapshot=snapshot_at(10, 1, [1, 2])))
    rd = rn.ready()
    assert rd.snapshot is not None and rd.snapshot.metadata.index == 10
    assert rd.hard_state == HardState(term=2, vote=0, commit=10)
    assert [(m.type, m.index) for m in rd.messages] == [(MT.APP_RESP, 10)]
    s.apply_snapshot(rd.snapshot)
    s.set_hard_state(rd.hard_state)
    rn.advance(rd)
    assert (rn.raft.raft_log.applied, rn.raft.raft_log.first_index()) == (10, 11)
    rn.step(peer_msg(MT.APP, 1, 2, 2, index=10, log_term=1, entries=(Entry(2, 11),), commit=11))
    rd = rn.ready()
    assert [(e.index, e.term) for e in rd.entries] == [(11, 2)]
    assert [(e.index, e.term) for e in rd.committed_entries] == [(11, 2)]
