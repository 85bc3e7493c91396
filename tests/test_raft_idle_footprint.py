"""What an idle replica keeps alive: no per-peer buffers, no per-group empty sets."""

from __future__ import annotations

import pytest

from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.quorum import JointConfig, MajorityConfig
from multiraft.raft.tracker import TrackerConfig
from multiraft.raft.types import Entry, Message, MessageType, ProgressState
from raft_harness import new_test_raft

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
