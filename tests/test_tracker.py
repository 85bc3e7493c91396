"""The progress tracker: membership views, commit index, activity and vote tallies."""

from __future__ import annotations

from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.quorum import JointConfig, MajorityConfig, VoteResult
from multiraft.raft.tracker import ProgressTracker, TrackerConfig
from multiraft.raft.types import ConfState


def tracker(
    incoming: set[int],
    outgoing: set[int] | None = None,
    learners: set[int] | None = None,
    learners_next: set[int] | None = None,
    auto_leave: bool = False,
) -> ProgressTracker:
    trk = ProgressTracker(max_inflight=8, max_inflight_bytes=0)
    trk.config = TrackerConfig(
        JointConfig(MajorityConfig(incoming), MajorityConfig(outgoing or ())),
        auto_leave,
        learners or set(),
        learners_next or set(),
    )
    learners = learners or set()
    for node_id in incoming | (outgoing or set()) | learners:
        trk.progress[node_id] = Progress(1, Inflights(8), is_learner=node_id in learners)
    return trk


def test_new_tracker_is_empty() -> None:
    trk = ProgressTracker(16, 1024)
    assert (trk.max_inflight, trk.max_inflight_bytes) == (16, 1024)
    assert trk.config == TrackerConfig()
    assert trk.progress == {} and trk.votes == {}
    assert trk.conf_state() == ConfState()
    assert trk.voter_nodes() == [] and trk.learner_nodes() == []
    assert not trk.is_singleton()


def test_conf_state_lists_every_kind_of_member() -> None:
    trk = tracker({1, 2, 3}, {1, 2, 4}, learners={5}, learners_next={4}, auto_leave=True)
    assert trk.conf_state() == ConfState(
        voters=(1, 2, 3),
        voters_outgoing=(1, 2, 4),
        learners=(5,),
        learners_next=(4,),
        auto_leave=True,
    )
    assert trk.voter_nodes() == [1, 2, 3, 4]
    assert trk.learner_nodes() == [5]


def test_is_singleton_only_for_one_voter_outside_joint() -> None:
    assert tracker({1}).is_singleton()
    assert tracker({1}, learners={2}).is_singleton()
    assert not tracker({1, 2}).is_singleton()
    assert not tracker({1}, {2}).is_singleton()


def test_committed_uses_voter_matches_only() -> None:
    trk = tracker({1, 2, 3}, learners={4})
    for node_id, match in ((1, 7), (2, 5), (3, 2), (4, 9)):
        trk.progress[node_id].match = match
    assert trk.committed() == 5
    trk.progress[3].match = 6
    assert trk.committed() == 6


def test_committed_in_joint_config_is_the_lower_half() -> None:
    trk = tracker({1, 2, 3}, {3, 4, 5})
    for node_id, match in ((1, 9), (2, 9), (3, 4), (4, 2), (5, 3)):
        trk.progress[node_id].match = match
    assert trk.committed() == 3


def test_committed_counts_a_voter_without_progress_as_zero() -> None:
    trk = tracker({1, 2, 3})
    trk.progress[1].match = 5
    trk.progress[2].match = 5
    del trk.progress[2]
    assert trk.committed() == 0


def test_visit_goes_in_ascending_id_order() -> None:
    trk = tracker({9, 3, 5}, learners={1, 7})
    seen: list[tuple[int, bool]] = []
    trk.visit(lambda node_id, pr: seen.append((node_id, pr.is_learner)))
    assert seen == [(1, True), (3, False), (5, False), (7, True), (9, False)]


def test_quorum_active_counts_recently_active_voters() -> None:
    trk = tracker({1, 2, 3}, learners={4, 5})
    trk.progress[1].recent_active = True
    trk.progress[4].recent_active = True
    trk.progress[5].recent_active = True
    assert not trk.quorum_active()
    trk.progress[2].recent_active = True
    assert trk.quorum_active()


def test_quorum_active_in_joint_config_needs_both_halves() -> None:
    trk = tracker({1, 2, 3}, {1, 4, 5})
    for node_id in (1, 2, 3):
        trk.progress[node_id].recent_active = True
    assert not trk.quorum_active()
    trk.progress[4].recent_active = True
    assert trk.quorum_active()


def test_first_vote_of_a_node_is_the_one_recorded() -> None:
    trk = tracker({1, 2, 3})
    trk.record_vote(2, True)
    trk.record_vote(2, False)
    assert trk.votes == {2: True}
    trk.reset_votes()
    assert trk.votes == {}
    trk.record_vote(2, False)
    assert trk.votes == {2: False}


def test_tally_votes_counts_voters_and_reports_the_result() -> None:
    trk = tracker({1, 2, 3, 4, 5}, learners={6})
    trk.record_vote(1, True)
    trk.record_vote(6, True)  # a learner's vote never counts
    trk.record_vote(9, True)  # nor does an unknown node's
    assert trk.tally_votes() == (1, 0, VoteResult.PENDING)
    trk.record_vote(2, False)
    trk.record_vote(3, False)
    assert trk.tally_votes() == (1, 2, VoteResult.PENDING)
    trk.record_vote(4, True)
    trk.record_vote(5, True)
    assert trk.tally_votes() == (3, 2, VoteResult.WON)


def test_tally_votes_lost() -> None:
    trk = tracker({1, 2, 3})
    trk.record_vote(1, True)
    trk.record_vote(2, False)
    trk.record_vote(3, False)
    assert trk.tally_votes() == (1, 2, VoteResult.LOST)


def test_tracker_config_clone_copies_learner_sets() -> None:
    cfg = TrackerConfig(JointConfig(MajorityConfig([1])), False, {2}, set())
    copy = cfg.clone()
    assert copy == cfg
    copy.learners.add(3)
    assert cfg.learners == {2}
    assert repr(cfg) == "voters=(1) learners=(2)"
