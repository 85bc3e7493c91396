"""RawNode.bootstrap_from_snapshot: a new group whose log starts after a snapshot."""

from __future__ import annotations

import pytest

from multiraft.raft import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    RawNode,
    Snapshot,
    SnapshotMetadata,
    StateType,
)
from raft_harness import new_test_config
from storage import MemoryStorage

VOTERS = ConfState(voters=(1, 2, 3))


def _initial(cs: ConfState = VOTERS, index: int = 3, data: bytes = b"state") -> Snapshot:
    return Snapshot(SnapshotMetadata(cs, index, 1), data)


def _persist(storage: MemoryStorage, rn: RawNode) -> None:
    """Persist and advance one Ready, as an application does."""
    rd = rn.ready()
    if rd.snapshot is not None:
        storage.apply_snapshot(rd.snapshot)
    storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
    rn.advance(rd)


def test_first_ready_carries_the_snapshot_and_the_hard_state_to_persist() -> None:
    storage = MemoryStorage()
    rn = RawNode(new_test_config(1, 10, 1, storage))
    snap = _initial()
    rn.bootstrap_from_snapshot(snap)
    assert rn.raft.trk.conf_state() == VOTERS
    assert rn.has_ready()
    rd = rn.ready()
    assert rd.snapshot is snap
    assert rd.hard_state == HardState(term=1, vote=0, commit=3)
    assert (rd.entries, rd.committed_entries, rd.messages) == ([], [], [])
    assert rd.must_sync
    assert rd.applied_cursor() == 3
    storage.apply_snapshot(snap)
    storage.set_hard_state(rd.hard_state)
    rn.advance(rd)
    log = rn.raft.raft_log
    assert (log.first_index(), log.last_index(), log.committed, log.applied) == (4, 3, 3, 3)
    assert log.term(3) == 1
    assert not rn.has_ready()


def test_campaign_after_the_snapshot_is_persisted_appends_the_empty_entry_at_n_plus_1() -> None:
    storage = MemoryStorage()
    rn = RawNode(new_test_config(1, 10, 1, storage))
    rn.bootstrap_from_snapshot(_initial(ConfState(voters=(1,)), index=1))
    # Not promotable while the snapshot is not persisted.
    rn.campaign()
    assert rn.raft.state is StateType.FOLLOWER
    _persist(storage, rn)
    rn.campaign()
    assert rn.raft.state is StateType.LEADER
    rd = rn.ready()
    assert [(e.index, e.term, e.data) for e in rd.entries] == [(2, 2, b"")]


def test_three_voters_elect_and_a_fourth_empty_member_is_sent_the_snapshot() -> None:
    storage = MemoryStorage()
    rn = RawNode(new_test_config(1, 10, 1, storage))
    rn.bootstrap_from_snapshot(_initial())
    _persist(storage, rn)
    rn.campaign()
    rd = rn.ready()
    votes = sorted((m.to, m.type, m.term, m.index, m.log_term) for m in rd.messages)
    assert votes == [(2, MessageType.VOTE, 2, 3, 1), (3, MessageType.VOTE, 2, 3, 1)]
    # A member with an empty log probed at index 0 cannot get entries 1..3: they
    # are compacted, so the leader sends the snapshot, membership included.
    r = rn.raft
    rn.step(Message(type=MessageType.VOTE_RESP, from_=2, to=1, term=2))
    assert r.state is StateType.LEADER
    _persist(storage, rn)
    pr = r.trk.progress[2]
    pr.become_probe()
    pr.next = 1
    pr.recent_active = True  # as after its answer
    r.send_append(2)
    (m,) = [m for m in r.msgs if m.to == 2]
    assert m.type is MessageType.SNAP
    assert m.snapshot is not None
    assert m.snapshot.metadata == SnapshotMetadata(VOTERS, 3, 1)


def test_restart_from_the_persisted_snapshot_rebuilds_the_member() -> None:
    storage = MemoryStorage()
    rn = RawNode(new_test_config(1, 10, 1, storage))
    rn.bootstrap_from_snapshot(_initial())
    _persist(storage, rn)
    again = RawNode(new_test_config(1, 10, 1, storage, applied=3))
    log = again.raft.raft_log
    assert again.raft.trk.conf_state() == VOTERS
    assert (again.raft.term, log.committed, log.applied, log.first_index()) == (1, 3, 3, 4)


def test_joint_membership_is_installed_as_one_configuration() -> None:
    cs = ConfState(voters=(1, 2), voters_outgoing=(1, 3), learners=(4,))
    rn = RawNode(new_test_config(1, 10, 1, MemoryStorage()))
    rn.bootstrap_from_snapshot(_initial(cs, index=4))
    assert rn.raft.trk.conf_state() == cs
    assert sorted(rn.raft.trk.progress) == [1, 2, 3, 4]


def test_refuses_an_empty_snapshot_no_voters_and_a_nonempty_storage() -> None:
    rn = RawNode(new_test_config(1, 10, 1, MemoryStorage()))
    with pytest.raises(ValueError, match="index and a term"):
        rn.bootstrap_from_snapshot(Snapshot())
    with pytest.raises(ValueError, match="at least one voter"):
        rn.bootstrap_from_snapshot(_initial(ConfState(learners=(1,))))
    storage = MemoryStorage()
    storage.append([Entry(1, 1)])
    rn = RawNode(new_test_config(1, 10, 1, storage))
    with pytest.raises(ValueError, match="nonempty storage"):
        rn.bootstrap_from_snapshot(_initial())
    rn = RawNode(new_test_config(1, 10, 1, MemoryStorage()))
    rn.bootstrap_from_snapshot(_initial())
    with pytest.raises(ValueError, match="nonempty storage"):
        rn.bootstrap_from_snapshot(_initial())
