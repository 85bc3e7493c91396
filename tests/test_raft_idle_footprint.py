"""What an idle replica keeps alive: no per-peer buffers, no per-group empty sets."""

from __future__ import annotations

import pytest

from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.quorum import JointConfig, MajorityConfig
from multiraft.raft.rawnode import RawNode
from multiraft.raft.read_only import ReadOnly
from multiraft.raft.tracker import TrackerConfig
from multiraft.raft.types import (
    NONE,
    Entry,
    HardState,
    Message,
    MessageType,
    ProgressState,
    ReadOnlyOption,
    ReadState,
    SoftState,
    StateType,
    shared_hard_state,
)
from raft_harness import new_storage, new_test_config, new_test_raft

MT = MessageType


def test_inflights_window_holds_no_buffers_until_an_append_and_after_it_is_freed() -> None:
    w = Inflights(4)
    assert (w._indexes, w._sizes) == (None, None)
    w.add(5, 100)
    w.add(7, 50)
    assert (list(w._indexes or ()), list(w._sizes or ()), w.bytes()) == ([5, 7], [100, 50], 150)
    w.free_le(5)
    assert (w.count(), w.bytes(), w.full()) == (1, 50, False)
    w.free_le(7)
    assert (w._indexes, w._sizes, w.count(), w.bytes()) == (None, None, 0, 0)


def test_inflights_free_first_one_releases_the_buffers_with_the_last_append() -> None:
    w = Inflights(1)
    w.add(3, 10)
    assert w.full()
    w.free_first_one()
    assert (w._indexes, w.count(), w.bytes(), w.full()) == (None, 0, 0, False)
    w.free_first_one()
    assert (w.count(), w.bytes()) == (0, 0)


def test_inflights_clone_of_an_empty_window_accepts_appends_independently() -> None:
    w = Inflights(2, max_bytes=100)
    other = w.clone()
    other.add(1, 100)
    assert (w.count(), other.count(), other.full()) == (0, 1, True)


def test_tracker_config_without_learners_shares_one_empty_set() -> None:
    a = TrackerConfig(JointConfig(MajorityConfig([1, 2, 3])))
    b = TrackerConfig(JointConfig(MajorityConfig([1])), False, set(), set())
    assert a.learners is b.learners is a.learners_next is b.learners_next
    assert a.learners == frozenset()


def test_tracker_config_clone_gives_mutable_learner_sets_even_when_empty() -> None:
    cfg = TrackerConfig(JointConfig(MajorityConfig([1, 2])))
    copy = cfg.clone()
    assert isinstance(copy.learners, set) and isinstance(copy.learners_next, set)
    copy.learners.add(3)
    copy.learners_next.add(2)
    assert (cfg.learners, cfg.learners_next) == (frozenset(), frozenset())
    assert repr(copy) == "voters=(1 2) learners=(3) learners_next=(2)"


def test_progress_restart_is_a_fresh_progress_that_keeps_its_learner_flag() -> None:
    pr = Progress(5, Inflights(4), match=4, is_learner=True, recent_active=True)
    pr.become_replicate()
    pr.inflights.add(6, 10)
    pr.sent_commit = 3
    pr.restart(9, 8)
    fresh = Progress(9, Inflights(4), match=8, is_learner=True)
    assert repr(pr) == repr(fresh) == "StateProbe match=8 next=9 learner inactive"
    assert (pr.state, pr.pending_snapshot, pr.msg_app_flow_paused, pr.sent_commit) == (
        ProgressState.PROBE,
        0,
        False,
        0,
    )
    assert (pr.inflights.count(), pr.inflights.bytes()) == (0, 0)
    with pytest.raises(ValueError, match="match < next"):
        pr.restart(3, 3)


def test_new_term_restarts_the_same_progress_objects_and_drops_pending_reads() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    r.become_candidate()
    r.become_leader()
    before = dict(r.trk.progress)
    r.read_only.add_request(1, Message(type=MT.READ_INDEX, entries=[Entry(0, 0, data=b"ctx")]))
    assert r.read_only.queue == [b"ctx"]
    r.become_follower(r.term + 1, 2)
    last = r.raft_log.last_index()
    assert all(r.trk.progress[pid] is pr for pid, pr in before.items())
    assert [(pid, pr.match, pr.next) for pid, pr in sorted(r.trk.progress.items())] == [
        (1, last, last + 1),
        (2, 0, last + 1),
        (3, 0, last + 1),
    ]
    assert (r.read_only.pending, r.read_only.queue) == ({}, [])


def test_every_progress_starts_with_the_one_shared_empty_window_per_limits() -> None:
    a = new_test_raft(1, peers=[1, 2, 3])
    b = new_test_raft(2, peers=[1, 2, 3])
    windows = {id(pr.inflights) for r in (a, b) for pr in r.trk.progress.values()}
    shared = Inflights.shared_empty(256, 0)
    assert windows == {id(shared)} and shared.is_shared
    assert Inflights.shared_empty(256, 10) is not shared
    assert Inflights.shared_empty(256, 10) is Inflights.shared_empty(256, 10)
    assert (shared.count(), shared.bytes(), shared.full()) == (0, 0, False)


def test_a_shared_window_refuses_appends_and_stays_empty_through_frees_and_resets() -> None:
    w = Inflights.shared_empty(3, 0)
    with pytest.raises(RuntimeError, match="shared window"):
        w.add(1, 10)
    w.free_le(100)
    w.free_first_one()
    w.reset()
    assert (w._indexes, w._sizes, w.count(), w.bytes(), w.is_shared) == (None, None, 0, 0, True)
    assert w.clone() is w
    own = w.private()
    assert (own.is_shared, own.size, own.max_bytes) == (False, 3, 0) and own is not w
    assert own.private() is own


def test_first_replicated_append_gives_the_progress_a_private_window_of_the_same_limits() -> None:
    r = new_test_raft(1, peers=[1, 2, 3], max_inflight_msgs=2)
    r.become_candidate()
    r.become_leader()
    r.read_messages()
    last = r.raft_log.last_index()
    shared = Inflights.shared_empty(2, 0)
    assert all(pr.inflights is shared for pr in r.trk.progress.values())
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=r.term, index=last))
    pr2, pr3 = r.trk.progress[2], r.trk.progress[3]
    assert pr2.state == ProgressState.REPLICATE and pr2.inflights is shared
    r.read_messages()
    r.step(Message(type=MT.PROP, from_=1, to=1, entries=[Entry(0, 0, data=b"a")]))
    r.step(Message(type=MT.PROP, from_=1, to=1, entries=[Entry(0, 0, data=b"b")]))
    apps = [(m.to, m.index, [e.index for e in m.entries]) for m in r.read_messages()]
    assert (2, last, [last + 1]) in apps and (2, last + 1, [last + 2]) in apps
    assert pr2.inflights is not shared and not pr2.inflights.is_shared
    assert (pr2.inflights.count(), pr2.inflights.full(), pr2.inflights.size) == (2, True, 2)
    # Peer 3 (still probing) and every other group's progress keep the empty shared one.
    assert pr3.inflights is shared and r.trk.progress[1].inflights is shared
    assert (shared.count(), shared.bytes()) == (0, 0)
    other = new_test_raft(4, peers=[4, 5], max_inflight_msgs=2)
    assert all(pr.inflights is shared for pr in other.trk.progress.values())
    # Acknowledged, the window empties but stays private until the group is idle.
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=r.term, index=last + 2))
    assert (pr2.inflights.count(), pr2.inflights.is_shared) == (0, False)
    r.trk.share_idle_windows()
    assert pr2.inflights is shared


def test_idle_windows_are_shared_again_only_when_nothing_is_in_flight() -> None:
    pr = Progress(5, Inflights.shared_empty(4, 100), match=4)
    pr.become_replicate()
    pr.sent_entries(2, 30)
    private = pr.inflights
    assert (pr.next, private.count(), private.bytes(), private.is_shared) == (7, 1, 30, False)
    pr.share_window_if_empty()
    assert pr.inflights is private
    private.free_le(6)
    pr.share_window_if_empty()
    assert pr.inflights is Inflights.shared_empty(4, 100)
    clone = pr.clone()
    assert clone.inflights is pr.inflights


def test_outboxes_start_as_the_shared_empty_tuple_and_are_given_back_empty() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    assert (r.msgs, r.read_states, r.pending_read_index_messages) == ((), (), ())
    assert r.read_messages() == [] and r.msgs == ()
    r.step(Message(type=MT.HUP, from_=1, to=1))
    assert isinstance(r.msgs, list) and [m.to for m in r.msgs] == [2, 3]
    sent = r.read_messages()
    assert [(m.type, m.to) for m in sent] == [(MT.VOTE, 2), (MT.VOTE, 3)] and r.msgs == ()
    r.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=r.term))
    assert r.state == StateType.LEADER
    # Until an entry of its term commits, the leader parks reads.
    r.read_messages()
    r.step(Message(type=MT.READ_INDEX, from_=1, to=1, entries=[Entry(0, 0, data=b"ctx")]))
    assert [m.entries[0].data for m in r.pending_read_index_messages] == [b"ctx"]
    last = r.raft_log.last_index()
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=r.term, index=last))
    assert r.pending_read_index_messages == ()
    r.read_messages()
    r.step(Message(type=MT.HEARTBEAT_RESP, from_=2, to=1, term=r.term, context=b"ctx"))
    assert r.read_states == [ReadState(index=last, request_ctx=b"ctx")]


def test_ready_hands_out_lists_and_puts_the_shared_empty_tuple_back() -> None:
    storage = new_storage([1])
    rn = RawNode(new_test_config(1, 10, 1, storage))
    rn.campaign()
    rd = rn.ready()
    assert isinstance(rd.messages, list) and rd.read_states == []
    assert (rn.raft.msgs, rn.raft.read_states) == ((), ())
    storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)
    rn.advance(rd)
    rn.read_index(b"r1")
    rd = rn.ready()
    assert rd.read_states == [ReadState(index=rn.raft.raft_log.committed, request_ctx=b"r1")]
    assert rd.messages == [] and isinstance(rd.messages, list)
    assert rn.raft.read_states == ()
    rn.advance(rd)
    assert not rn.has_ready()


def test_equal_soft_states_are_one_instance() -> None:
    a = new_test_raft(1, peers=[1, 2, 3])
    b = new_test_raft(2, peers=[1, 2, 3])
    assert a.soft_state() is b.soft_state() == SoftState(NONE, StateType.FOLLOWER)
    a.become_candidate()
    a.become_leader()
    b.become_follower(a.term, 1)
    assert a.soft_state() is a.soft_state() == SoftState(1, StateType.LEADER)
    assert b.soft_state() == SoftState(1, StateType.FOLLOWER)
    assert b.soft_state() is not a.soft_state()


def test_votes_are_the_shared_empty_dict_outside_an_election_and_private_in_one() -> None:
    a = new_test_raft(1, peers=[1, 2, 3])
    b = new_test_raft(2, peers=[1, 2, 3])
    shared = a.trk.votes
    assert shared == {} and b.trk.votes is shared
    a.step(Message(type=MT.HUP, from_=1, to=1))
    assert a.trk.votes == {1: True} and a.trk.votes is not shared
    assert shared == {} and b.trk.votes is shared
    a.step(Message(type=MT.VOTE_RESP, from_=3, to=1, term=a.term, reject=True))
    a.step(Message(type=MT.VOTE_RESP, from_=3, to=1, term=a.term))
    assert a.trk.votes == {1: True, 3: False} and a.trk.tally_votes()[:2] == (1, 1)
    a.trk.reset_votes()
    assert a.trk.votes is shared and shared == {}


def test_pending_reads_are_the_shared_empty_dict_until_one_arrives_and_once_all_are_done() -> None:
    a = ReadOnly(ReadOnlyOption.SAFE)
    b = ReadOnly(ReadOnlyOption.SAFE)
    shared = a.pending
    assert shared == {} and b.pending is shared
    req = Message(type=MT.READ_INDEX, entries=(Entry(0, 0, data=b"x"),))
    a.add_request(7, req)
    assert list(a.pending) == [b"x"] and b.pending is shared and shared == {}
    assert [s.index for s in a.advance(b"x")] == [7]
    assert a.pending is shared and shared == {}
    a.add_request(8, req)
    a.reset()
    assert a.pending is shared and shared == {}


def test_settled_rawnodes_keep_one_shared_instance_of_an_equal_hard_state() -> None:
    nodes = []
    for _ in range(2):
        storage = new_storage([1])
        rn = RawNode(new_test_config(1, 10, 1, storage))
        rn.campaign()
        while rn.has_ready():
            rd = rn.ready()
            storage.append(rd.entries)
            if rd.hard_state is not None:
                storage.set_hard_state(rd.hard_state)
            rn.advance(rd)
        nodes.append((rn, storage))
    (a, sa), (b, sb) = nodes
    assert a._prev_hard_state == HardState(term=1, vote=1, commit=1)
    assert a._prev_hard_state is b._prev_hard_state
    assert sa.initial_state()[0] is sb.initial_state()[0] is a._prev_hard_state
    assert shared_hard_state(HardState(term=1, vote=1, commit=1)) is a._prev_hard_state
    fresh = HardState(term=99, vote=3, commit=7)
    assert shared_hard_state(fresh) is fresh
    assert shared_hard_state(HardState(term=99, vote=3, commit=7)) is fresh
