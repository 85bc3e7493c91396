"""What an idle replica keeps alive: no per-peer buffers, no per-group empty sets."""

from __future__ import annotations

from multiraft.raft.inflights import Inflights
from multiraft.raft.quorum import JointConfig, MajorityConfig
from multiraft.raft.tracker import TrackerConfig


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
