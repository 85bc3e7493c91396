"""Membership changes: simple and joint, learners, staged learners, errors and restore."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.raft.confchange import Changer, ConfChangeError, restore
from multiraft.raft.errors import RaftError
from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.quorum import JointConfig, MajorityConfig
from multiraft.raft.tracker import TrackerConfig
from multiraft.raft.types import ConfChangeSingle, ConfChangeType, ConfState

ADD = ConfChangeType.ADD_NODE
LEARNER = ConfChangeType.ADD_LEARNER_NODE
REMOVE = ConfChangeType.REMOVE_NODE
UPDATE = ConfChangeType.UPDATE_NODE

LAST_INDEX = 10
Members = tuple[TrackerConfig, dict[int, Progress]]


def cc(kind: ConfChangeType, node_id: int) -> ConfChangeSingle:
    return ConfChangeSingle(kind, node_id)


def changer(members: Members, last_index: int = LAST_INDEX) -> Changer:
    config, progress = members
    return Changer(config, progress, last_index, 4, 1000)


def empty() -> Members:
    return TrackerConfig(), {}


def state(members: Members) -> ConfState:
    """The ConfState of a configuration."""
    return members[0].conf_state()


def build(voters: Sequence[int], learners: Sequence[int] = ()) -> Members:
    return restore(ConfState(voters=voters, learners=learners), changer(empty()))


def test_adding_first_voter_to_empty_config() -> None:
    config, progress = changer(empty()).simple([cc(ADD, 1)])
    assert state((config, progress)) == ConfState(voters=(1,))
    pr = progress[1]
    assert (pr.match, pr.next, pr.is_learner, pr.recent_active) == (0, LAST_INDEX, False, True)
    assert (pr.inflights.size, pr.inflights.max_bytes, pr.inflights.count()) == (4, 1000, 0)


def test_new_member_next_is_at_least_one() -> None:
    _, progress = changer(empty(), last_index=0).simple([cc(ADD, 1)])
    assert (progress[1].match, progress[1].next) == (0, 1)


def test_simple_add_and_remove_voter() -> None:
    members = build([1, 2])
    members = changer(members).simple([cc(ADD, 3)])
    assert state(members) == ConfState(voters=(1, 2, 3))
    members = changer(members).simple([cc(REMOVE, 2)])
    assert state(members) == ConfState(voters=(1, 3))
    assert sorted(members[1]) == [1, 3]


def test_simple_add_existing_voter_keeps_its_progress() -> None:
    members = build([1, 2])
    members[1][2].match = 7
    config, progress = changer(members).simple([cc(ADD, 2)])
    assert state((config, progress)) == ConfState(voters=(1, 2))
    assert progress[2].match == 7


def test_simple_add_learner() -> None:
    config, progress = changer(build([1])).simple([cc(LEARNER, 2)])
    assert state((config, progress)) == ConfState(voters=(1,), learners=(2,))
    assert progress[2].is_learner
    assert (progress[2].next, progress[2].recent_active) == (LAST_INDEX, True)


def test_promoting_a_learner_keeps_its_progress() -> None:
    members = build([1], [2])
    members[1][2].match = 6
    members[1][2].next = 7
    config, progress = changer(members).simple([cc(ADD, 2)])
    assert state((config, progress)) == ConfState(voters=(1, 2))
    assert not progress[2].is_learner
    assert (progress[2].match, progress[2].next) == (6, 7)


def test_demoting_a_voter_to_learner_outside_joint() -> None:
    members = build([1, 2, 3])
    members[1][3].match = 4
    config, progress = changer(members).simple([cc(LEARNER, 3)])
    assert state((config, progress)) == ConfState(voters=(1, 2), learners=(3,))
    assert progress[3].is_learner
    assert progress[3].match == 4


def test_adding_an_existing_learner_as_learner_is_a_no_op() -> None:
    members = build([1], [2])
    config, progress = changer(members).simple([cc(LEARNER, 2)])
    assert state((config, progress)) == ConfState(voters=(1,), learners=(2,))


def test_removing_a_learner() -> None:
    config, progress = changer(build([1], [2])).simple([cc(REMOVE, 2)])
    assert state((config, progress)) == ConfState(voters=(1,))
    assert sorted(progress) == [1]


def test_removing_an_unknown_node_is_a_no_op() -> None:
    config, progress = changer(build([1, 2])).simple([cc(REMOVE, 9)])
    assert state((config, progress)) == ConfState(voters=(1, 2))


def test_update_node_and_zero_node_id_change_nothing() -> None:
    config, progress = changer(build([1, 2])).simple([cc(UPDATE, 1), cc(ADD, 0), cc(REMOVE, 0)])
    assert state((config, progress)) == ConfState(voters=(1, 2))


def test_simple_change_of_two_voters_is_refused() -> None:
    with pytest.raises(ConfChangeError, match="more than one voter"):
        changer(build([1, 2])).simple([cc(ADD, 3), cc(ADD, 4)])
    with pytest.raises(ConfChangeError, match="more than one voter"):
        changer(build([1, 2, 3])).simple([cc(ADD, 4), cc(REMOVE, 3)])


def test_simple_changes_that_cancel_out_are_allowed() -> None:
    config, progress = changer(build([1, 2])).simple(
        [cc(ADD, 3), cc(REMOVE, 3), cc(LEARNER, 4), cc(ADD, 5)]
    )
    assert state((config, progress)) == ConfState(voters=(1, 2, 5), learners=(4,))


def test_removing_the_last_voter_is_refused() -> None:
    with pytest.raises(ConfChangeError, match="removed all voters"):
        changer(build([1])).simple([cc(REMOVE, 1)])
    with pytest.raises(ConfChangeError, match="removed all voters"):
        changer(build([1])).simple([cc(LEARNER, 1)])


def test_learner_only_change_on_empty_config_is_refused() -> None:
    with pytest.raises(ConfChangeError, match="removed all voters"):
        changer(empty()).simple([cc(LEARNER, 1)])


def test_changer_never_mutates_its_inputs() -> None:
    members = build([1, 2, 3], [4])
    members[1][2].match = 5
    before_state = state(members)
    before_progress = {k: repr(v) for k, v in members[1].items()}
    config, progress = changer(members).simple([cc(LEARNER, 2)])
    progress[1].match = 9
    progress[1].become_replicate()
    progress[1].sent_entries(1, 1)
    assert progress[1].inflights.count() == 1
    assert state(members) == before_state
    assert {k: repr(v) for k, v in members[1].items()} == before_progress
    assert not members[1][2].is_learner
    assert all(progress[k] is not members[1][k] for k in progress if k in members[1])
    assert state((config, progress)) == ConfState(voters=(1, 3), learners=(2, 4))


def test_failed_change_leaves_inputs_untouched() -> None:
    members = build([1, 2])
    with pytest.raises(ConfChangeError):
        changer(members).simple([cc(ADD, 3), cc(ADD, 4)])
    assert state(members) == ConfState(voters=(1, 2))
    assert sorted(members[1]) == [1, 2]


def test_enter_joint_copies_incoming_to_outgoing_and_applies_changes() -> None:
    members = build([1, 2, 3])
    config, progress = changer(members).enter_joint(True, [cc(ADD, 4), cc(REMOVE, 3)])
    assert state((config, progress)) == ConfState(
        voters=(1, 2, 4), voters_outgoing=(1, 2, 3), auto_leave=True
    )
    # The removed voter keeps its progress while it is still an outgoing voter.
    assert sorted(progress) == [1, 2, 3, 4]
    assert progress[4].next == LAST_INDEX


def test_enter_joint_without_auto_leave() -> None:
    config, _ = changer(build([1, 2])).enter_joint(False, [cc(ADD, 3)])
    assert not config.auto_leave
    assert config.voters == JointConfig(MajorityConfig([1, 2, 3]), MajorityConfig([1, 2]))


def test_enter_joint_with_no_changes_duplicates_the_config() -> None:
    config, _ = changer(build([1, 2])).enter_joint(False, [])
    assert state((config, {})) == ConfState(voters=(1, 2), voters_outgoing=(1, 2))


def test_enter_joint_when_already_joint_is_refused() -> None:
    members = changer(build([1, 2])).enter_joint(False, [cc(ADD, 3)])
    with pytest.raises(ConfChangeError, match="already joint"):
        changer(members).enter_joint(False, [cc(ADD, 4)])


def test_enter_joint_from_empty_config_is_refused() -> None:
    with pytest.raises(ConfChangeError, match="without voters"):
        changer(empty()).enter_joint(False, [cc(ADD, 1)])


def test_enter_joint_removing_every_incoming_voter_is_refused() -> None:
    with pytest.raises(ConfChangeError, match="removed all voters"):
        changer(build([1, 2])).enter_joint(False, [cc(REMOVE, 1), cc(REMOVE, 2)])


def test_simple_change_in_joint_config_is_refused() -> None:
    members = changer(build([1, 2])).enter_joint(False, [cc(ADD, 3)])
    with pytest.raises(ConfChangeError, match="joint"):
        changer(members).simple([cc(ADD, 4)])


def test_leave_joint_drops_outgoing_and_forgets_removed_voters() -> None:
    members = changer(build([1, 2, 3])).enter_joint(True, [cc(ADD, 4), cc(REMOVE, 3)])
    config, progress = changer(members).leave_joint()
    assert state((config, progress)) == ConfState(voters=(1, 2, 4))
    assert not config.auto_leave
    assert sorted(progress) == [1, 2, 4]


def test_leave_joint_when_not_joint_is_refused() -> None:
    with pytest.raises(ConfChangeError, match="not joint"):
        changer(build([1, 2])).leave_joint()


def test_demoting_an_outgoing_voter_stages_it_in_learners_next() -> None:
    members = build([1, 2, 3])
    members[1][3].match = 8
    joint = changer(members).enter_joint(True, [cc(LEARNER, 3)])
    config, progress = joint
    assert state(joint) == ConfState(
        voters=(1, 2), voters_outgoing=(1, 2, 3), learners_next=(3,), auto_leave=True
    )
    # Still a voter of the outgoing half: not marked learner yet.
    assert not progress[3].is_learner
    assert progress[3].match == 8
    config, progress = changer(joint).leave_joint()
    assert state((config, progress)) == ConfState(voters=(1, 2), learners=(3,))
    assert progress[3].is_learner
    assert progress[3].match == 8


def test_removing_then_adding_as_learner_in_joint_stages_it() -> None:
    joint = changer(build([1, 2, 3])).enter_joint(False, [cc(REMOVE, 3), cc(LEARNER, 3)])
    assert state(joint) == ConfState(voters=(1, 2), voters_outgoing=(1, 2, 3), learners_next=(3,))


def test_adding_back_a_staged_learner_as_voter_unstages_it() -> None:
    joint = changer(build([1, 2, 3])).enter_joint(False, [cc(LEARNER, 3), cc(ADD, 3)])
    assert state(joint) == ConfState(voters=(1, 2, 3), voters_outgoing=(1, 2, 3))
    assert not joint[1][3].is_learner


def test_removing_a_staged_learner_unstages_it_and_leave_forgets_it() -> None:
    joint = changer(build([1, 2, 3])).enter_joint(False, [cc(LEARNER, 3), cc(REMOVE, 3)])
    assert state(joint) == ConfState(voters=(1, 2), voters_outgoing=(1, 2, 3))
    _, progress = changer(joint).leave_joint()
    assert sorted(progress) == [1, 2]


def test_new_learner_in_joint_that_is_not_outgoing_is_a_learner_at_once() -> None:
    joint = changer(build([1, 2])).enter_joint(False, [cc(ADD, 3), cc(LEARNER, 4)])
    assert state(joint) == ConfState(voters=(1, 2, 3), voters_outgoing=(1, 2), learners=(4,))
    assert joint[1][4].is_learner


def test_promoting_a_learner_jointly() -> None:
    members = build([1, 2], [3])
    joint = changer(members).enter_joint(True, [cc(ADD, 3), cc(REMOVE, 1)])
    assert state(joint) == ConfState(voters=(2, 3), voters_outgoing=(1, 2), auto_leave=True)
    assert not joint[1][3].is_learner
    assert state(changer(joint).leave_joint()) == ConfState(voters=(2, 3))


def progress_for(ids: Sequence[int], learners: Sequence[int] = ()) -> dict[int, Progress]:
    return {i: Progress(1, Inflights(4), is_learner=i in learners) for i in ids}


@pytest.mark.parametrize(
    ("config", "progress", "message"),
    [
        (
            TrackerConfig(JointConfig(MajorityConfig([1, 2]))),
            progress_for([1]),
            "no progress for member 2",
        ),
        (
            TrackerConfig(JointConfig(MajorityConfig([1, 2])), learners={2}),
            progress_for([1, 2], learners=[2]),
            "learner and an incoming voter",
        ),
        (
            TrackerConfig(JointConfig(MajorityConfig([1]), MajorityConfig([1, 2])), learners={2}),
            progress_for([1, 2], learners=[2]),
            "learner and an outgoing voter",
        ),
        (
            TrackerConfig(JointConfig(MajorityConfig([1])), learners={2}),
            progress_for([1, 2]),
            "not marked",
        ),
        (
            TrackerConfig(
                JointConfig(MajorityConfig([1]), MajorityConfig([1, 2])), learners_next={3}
            ),
            progress_for([1, 2, 3]),
            "not an outgoing voter",
        ),
        (
            TrackerConfig(
                JointConfig(MajorityConfig([1]), MajorityConfig([1, 2])), learners_next={2}
            ),
            progress_for([1, 2], learners=[2]),
            "already marked learner",
        ),
        (
            TrackerConfig(JointConfig(MajorityConfig([1])), auto_leave=True),
            progress_for([1]),
            "auto_leave",
        ),
    ],
)
def test_inconsistent_input_config_is_refused(
    config: TrackerConfig, progress: dict[int, Progress], message: str
) -> None:
    chg = Changer(config, progress, LAST_INDEX, 4)
    with pytest.raises(ConfChangeError, match=message):
        chg.simple([cc(UPDATE, 1)])
    with pytest.raises(ConfChangeError, match=message):
        chg.enter_joint(False, [])
    with pytest.raises(ConfChangeError, match=message):
        chg.leave_joint()


def test_conf_change_error_is_a_value_error_and_a_raft_error() -> None:
    assert issubclass(ConfChangeError, ValueError)
    assert issubclass(ConfChangeError, RaftError)


def test_restore_simple_config() -> None:
    cs = ConfState(voters=(1, 2, 3), learners=(4, 5))
    config, progress = restore(cs, changer(empty()))
    assert state((config, progress)) == cs
    assert sorted(progress) == [1, 2, 3, 4, 5]
    assert [progress[i].is_learner for i in range(1, 6)] == [False, False, False, True, True]
    assert all(pr.next == LAST_INDEX and pr.match == 0 for pr in progress.values())


def test_restore_joint_config_with_staged_learner() -> None:
    cs = ConfState(
        voters=(1, 2, 3),
        learners=(5,),
        voters_outgoing=(1, 2, 4, 6),
        learners_next=(4,),
        auto_leave=True,
    )
    config, progress = restore(cs, changer(empty()))
    assert state((config, progress)) == cs
    assert sorted(progress) == [1, 2, 3, 4, 5, 6]
    assert progress[5].is_learner and not progress[4].is_learner


def test_restore_empty_conf_state_gives_empty_config() -> None:
    config, progress = restore(ConfState(), changer(empty()))
    assert config == TrackerConfig()
    assert progress == {}


def test_restore_of_an_empty_conf_state_hands_back_the_changers_own_config_and_progress() -> None:
    chg = changer(empty())
    config, progress = restore(ConfState(auto_leave=True), chg)
    assert config is chg.config and progress is chg.progress


def test_restore_with_swapped_arguments_raises_type_error() -> None:
    with pytest.raises(TypeError, match="conf_state"):
        restore(changer(empty()), ConfState(voters=(1,)))  # type: ignore[arg-type]


def test_restore_of_learners_without_voters_is_refused() -> None:
    with pytest.raises(ConfChangeError, match="removed all voters"):
        restore(ConfState(learners=(1,)), changer(empty()))


@st.composite
def valid_conf_states(draw: st.DrawFn) -> ConfState:
    ids = st.integers(1, 12)
    voters = draw(st.sets(ids, min_size=1, max_size=6))
    outgoing = draw(st.sets(ids, max_size=6))
    learners_next = (
        draw(st.sets(st.sampled_from(sorted(outgoing - voters)))) if (outgoing - voters) else set()
    )
    learners = draw(st.sets(ids, max_size=4)) - voters - outgoing
    auto_leave = bool(outgoing) and draw(st.booleans())
    return ConfState(
        voters=voters,
        voters_outgoing=outgoing,
        learners=learners,
        learners_next=learners_next,
        auto_leave=auto_leave,
    )


@given(cs=valid_conf_states(), last_index=st.integers(0, 100))
def test_restore_round_trips_any_valid_conf_state(cs: ConfState, last_index: int) -> None:
    config, progress = restore(cs, changer(empty(), last_index=last_index))
    assert state((config, progress)) == cs
    members = set(cs.voters) | set(cs.voters_outgoing) | set(cs.learners)
    assert set(progress) == members
    for node_id, pr in progress.items():
        assert pr.is_learner == (node_id in cs.learners)
        assert (pr.match, pr.next) == (0, max(last_index, 1))


changes = st.lists(
    st.builds(ConfChangeSingle, st.sampled_from(list(ConfChangeType)), st.integers(0, 6)),
    max_size=4,
)


@given(cs=valid_conf_states(), ops=st.lists(st.tuples(st.integers(0, 2), changes), max_size=6))
def test_random_changes_keep_invariants_and_never_touch_inputs(
    cs: ConfState, ops: list[tuple[int, list[ConfChangeSingle]]]
) -> None:
    members = restore(cs, changer(empty()))
    for kind, batch in ops:
        before = (state(members), {k: repr(v) for k, v in members[1].items()})
        chg = changer(members)
        try:
            if kind == 0:
                result = chg.simple(batch)
            elif kind == 1:
                result = chg.enter_joint(True, batch)
            else:
                result = chg.leave_joint()
        except ConfChangeError:
            result = members
        assert (state(members), {k: repr(v) for k, v in members[1].items()}) == before
        # The result restores to itself: it is a valid, self-consistent configuration.
        rebuilt = restore(state(result), changer(empty()))
        assert state(rebuilt) == state(result)
        assert set(rebuilt[1]) == set(result[1])
        members = result
