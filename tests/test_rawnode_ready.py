"""The RawNode contract: what a Ready holds, what advance acknowledges, status and step."""

from __future__ import annotations

import pytest

from multiraft.raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    RawNode,
    ReadState,
    Ready,
    SoftState,
    StateType,
    StepLocalMsgError,
    StepPeerNotFoundError,
)
from raft_harness import new_storage, new_test_config
from storage import MemoryStorage

MT = MessageType
LEADER, FOLLOWER = StateType.LEADER, StateType.FOLLOWER


def handle(rn: RawNode, s: MemoryStorage) -> Ready:
    """Do what the application must with the next Ready: persist, apply conf changes, advance."""
    rd = rn.ready()
    if rd.entries:
        s.append(rd.entries)
    if rd.hard_state is not None:
        s.set_hard_state(rd.hard_state)
    for e in rd.committed_entries:
        if e.type == EntryType.CONF_CHANGE:
            rn.apply_conf_change(ConfChange.from_bytes(e.data))
    rn.advance(rd)
    return rd


def settle(rn: RawNode, s: MemoryStorage) -> None:
    while rn.has_ready():
        handle(rn, s)


def leader_of_three() -> tuple[RawNode, MemoryStorage]:
    """RawNode 1 leading {1, 2, 3} at term 1; its empty entry is committed and applied."""
    s = new_storage([1, 2, 3])
    rn = RawNode(new_test_config(1, 10, 1, s))
    rn.campaign()
    rn.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=1))
    settle(rn, s)
    rn.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=1))
    settle(rn, s)
    assert (rn.raft.state, rn.raft.raft_log.committed, rn.raft.raft_log.applied) == (LEADER, 1, 1)
    return rn, s


def follower_of_three(term: int = 1, lead: int = NONE) -> tuple[RawNode, MemoryStorage]:
    s = new_storage([1, 2, 3])
    rn = RawNode(new_test_config(1, 10, 1, s))
    rn.raft.become_follower(term, lead)
    settle(rn, s)
    return rn, s


# ---------------------------------------------------------------- bootstrap


def test_first_ready_after_bootstrap_holds_the_membership_entries_and_hard_state() -> None:
    s = MemoryStorage()
    rn = RawNode(new_test_config(1, 10, 1, s))
    assert not rn.has_ready()
    rn.bootstrap([1, 2, 3])
    assert rn.has_ready()
    rd = rn.ready()
    want = [
        Entry(1, i, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.ADD_NODE, i).to_bytes())
        for i in (1, 2, 3)
    ]
    assert rd.entries == want
    assert rd.committed_entries == want
    assert rd.hard_state == HardState(term=1, vote=NONE, commit=3)
    assert (rd.soft_state, rd.messages, rd.snapshot, rd.must_sync) == (None, [], None, True)


def test_applying_the_bootstrap_entries_leaves_nothing_to_do() -> None:
    s = MemoryStorage()
    rn = RawNode(new_test_config(1, 10, 1, s))
    rn.bootstrap([1, 2, 3])
    handle(rn, s)
    assert not rn.has_ready()
    assert rn.raft.raft_log.applied == 3
    assert rn.raft.trk.conf_state() == ConfState(voters=(1, 2, 3))


def test_bootstrap_refuses_no_peers_duplicates_and_a_used_storage() -> None:
    rn = RawNode(new_test_config(1, 10, 1, MemoryStorage()))
    with pytest.raises(ValueError, match="peers"):
        rn.bootstrap([])
    with pytest.raises(ValueError, match="peers"):
        rn.bootstrap([1, 1])
    used = new_storage([1], entries=[Entry(1, 1)])
    with pytest.raises(ValueError, match="nonempty"):
        RawNode(new_test_config(1, 10, 1, used)).bootstrap([1])


def test_single_member_campaign_ready_reports_the_new_role_term_and_entry() -> None:
    s = MemoryStorage()
    rn = RawNode(new_test_config(1, 10, 1, s))
    rn.bootstrap([1])
    handle(rn, s)
    rn.campaign()
    rd = handle(rn, s)
    assert rd.soft_state == SoftState(lead=1, raft_state=LEADER)
    assert rd.hard_state == HardState(term=2, vote=1, commit=2)
    assert rd.entries == [Entry(2, 2)]
    assert rd.committed_entries == [Entry(2, 2)]
    assert (rd.messages, rd.must_sync) == ([], True)
    assert not rn.has_ready()


# ---------------------------------------------------------- changed fields


def test_hard_and_soft_state_are_none_when_unchanged() -> None:
    rn, s = leader_of_three()
    rn.tick()
    assert rn.has_ready()
    rd = handle(rn, s)
    assert [(m.type, m.to) for m in rd.messages] == [(MT.HEARTBEAT, 2), (MT.HEARTBEAT, 3)]
    assert (rd.hard_state, rd.soft_state, rd.entries, rd.must_sync) == (None, None, [], False)


def test_new_entries_need_a_synced_write() -> None:
    rn, s = leader_of_three()
    rn.propose(b"data")
    rd = handle(rn, s)
    assert rd.entries == [Entry(1, 2, data=b"data")]
    assert (rd.hard_state, rd.must_sync) == (None, True)


def test_commit_only_change_needs_no_synced_write() -> None:
    rn, s = leader_of_three()
    rn.propose(b"data")
    handle(rn, s)
    rn.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=2))
    rd = handle(rn, s)
    assert rd.hard_state == HardState(term=1, vote=1, commit=2)
    assert rd.committed_entries == [Entry(1, 2, data=b"data")]
    assert (rd.entries, rd.must_sync) == ([], False)


def test_term_change_needs_a_synced_write_and_reports_the_new_leader() -> None:
    rn, s = follower_of_three(term=1)
    rn.step(Message(type=MT.HEARTBEAT, from_=2, to=1, term=5))
    rd = handle(rn, s)
    assert rd.hard_state == HardState(term=5, vote=NONE, commit=0)
    assert rd.soft_state == SoftState(lead=2, raft_state=FOLLOWER)
    assert (rd.entries, rd.must_sync) == ([], True)


def test_vote_change_needs_a_synced_write() -> None:
    rn, s = follower_of_three(term=1)
    rn.step(Message(type=MT.VOTE, from_=2, to=1, term=1))
    rd = handle(rn, s)
    assert rd.hard_state == HardState(term=1, vote=2, commit=0)
    assert [(m.type, m.to, m.reject) for m in rd.messages] == [(MT.VOTE_RESP, 2, False)]
    assert (rd.soft_state, rd.entries, rd.must_sync) == (None, [], True)


def test_read_states_are_delivered_in_one_ready_only() -> None:
    s = new_storage([1])
    rn = RawNode(new_test_config(1, 10, 1, s))
    rn.campaign()
    settle(rn, s)
    rn.read_index(b"ctx")
    rd = handle(rn, s)
    assert rd.read_states == [ReadState(index=1, request_ctx=b"ctx")]
    assert not rn.has_ready()
    assert rn.ready().read_states == []


# ----------------------------------------------------------------- status


def test_status_of_a_leader_reports_a_copy_of_every_progress() -> None:
    rn, _ = leader_of_three()
    st = rn.status()
    assert (st.id, st.applied, st.lead_transferee) == (1, 1, NONE)
    assert st.hard_state == HardState(term=1, vote=1, commit=1)
    assert st.soft_state == SoftState(lead=1, raft_state=LEADER)
    assert {pid: pr.match for pid, pr in st.progress.items()} == {1: 1, 2: 1, 3: 0}
    st.progress[3].match = 99
    assert rn.raft.trk.progress[3].match == 0


def test_status_of_a_follower_has_no_progress() -> None:
    rn, _ = follower_of_three(term=3, lead=2)
    st = rn.status()
    assert st.progress == {}
    assert st.soft_state == SoftState(lead=2, raft_state=FOLLOWER)
    assert st.hard_state == HardState(term=3, vote=NONE, commit=0)


# -------------------------------------------------------------------- step


@pytest.mark.parametrize(
    "msg_type", [MT.HUP, MT.BEAT, MT.UNREACHABLE, MT.SNAP_STATUS, MT.CHECK_QUORUM]
)
def test_step_refuses_local_message_types_from_the_network(msg_type: MessageType) -> None:
    rn, _ = leader_of_three()
    with pytest.raises(StepLocalMsgError):
        rn.step(Message(type=msg_type, from_=2, to=1, term=1))
    assert not rn.has_ready()


@pytest.mark.parametrize(
    "msg_type",
    [MT.APP_RESP, MT.VOTE_RESP, MT.HEARTBEAT_RESP, MT.READ_INDEX_RESP, MT.PRE_VOTE_RESP],
)
def test_step_refuses_responses_from_unknown_peers(msg_type: MessageType) -> None:
    rn, _ = leader_of_three()
    with pytest.raises(StepPeerNotFoundError):
        rn.step(Message(type=msg_type, from_=9, to=1, term=1))
    assert not rn.has_ready()


def test_step_accepts_requests_from_peers_it_does_not_know_yet() -> None:
    rn, s = follower_of_three(term=1)
    rn.step(Message(type=MT.HEARTBEAT, from_=9, to=1, term=2))
    rd = handle(rn, s)
    assert rd.soft_state == SoftState(lead=9, raft_state=FOLLOWER)
    assert [(m.type, m.to, m.term) for m in rd.messages] == [(MT.HEARTBEAT_RESP, 9, 2)]
