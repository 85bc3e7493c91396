"""Majority and joint quorums: committed index and vote results."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from multiraft.raft.quorum import MAX_INDEX, JointConfig, MajorityConfig, VoteResult

PENDING, LOST, WON = VoteResult.PENDING, VoteResult.LOST, VoteResult.WON


def acked_by(indexes: dict[int, int]) -> Callable[[int], int | None]:
    return indexes.get


def test_majority_config_is_a_sorted_immutable_set() -> None:
    cfg = MajorityConfig([3, 1, 2, 1])
    assert len(cfg) == 3
    assert list(cfg) == [1, 2, 3]
    assert cfg.slice() == (1, 2, 3)
    assert 2 in cfg and 4 not in cfg
    assert cfg == MajorityConfig({1, 2, 3})
    assert repr(cfg) == "(1 2 3)"
    assert repr(JointConfig(cfg, MajorityConfig([1, 4]))) == "(1 2 3)&&(1 4)"


def test_empty_majority_commits_max_index_so_joint_halves_compose() -> None:
    assert MajorityConfig().committed_index(acked_by({1: 5})) == MAX_INDEX == (1 << 63) - 1


def test_single_voter_commits_its_own_ack_or_zero_when_unknown() -> None:
    cfg = MajorityConfig([1])
    assert cfg.committed_index(acked_by({1: 7})) == 7
    assert cfg.committed_index(acked_by({})) == 0
    assert cfg.committed_index(acked_by({2: 9})) == 0


def test_two_voters_commit_the_lower_ack() -> None:
    cfg = MajorityConfig([1, 2])
    assert cfg.committed_index(acked_by({1: 10, 2: 5})) == 5
    assert cfg.committed_index(acked_by({1: 10})) == 0


def test_three_voters_commit_the_median_with_missing_acks_as_zero() -> None:
    cfg = MajorityConfig([1, 2, 3])
    assert cfg.committed_index(acked_by({1: 2, 2: 12, 3: 8})) == 8
    assert cfg.committed_index(acked_by({1: 10, 2: 5})) == 5
    assert cfg.committed_index(acked_by({1: 10})) == 0
    assert cfg.committed_index(acked_by({})) == 0


def test_four_voters_need_three_acks() -> None:
    cfg = MajorityConfig([1, 2, 3, 4])
    assert cfg.committed_index(acked_by({1: 10, 2: 9, 3: 8, 4: 7})) == 8
    assert cfg.committed_index(acked_by({1: 10, 2: 9})) == 0
    assert cfg.committed_index(acked_by({1: 10, 2: 9, 4: 3})) == 3


def test_five_voters_need_three_acks() -> None:
    cfg = MajorityConfig([1, 2, 3, 4, 5])
    assert cfg.committed_index(acked_by({1: 1, 2: 2, 3: 3, 4: 4, 5: 5})) == 3
    assert cfg.committed_index(acked_by({1: 5, 2: 5, 5: 1})) == 1
    assert cfg.committed_index(acked_by({1: 9, 2: 9, 3: 9})) == 9
    assert cfg.committed_index(acked_by({1: 9, 2: 9})) == 0


def test_acks_of_non_voters_do_not_count() -> None:
    cfg = MajorityConfig([1, 2, 3])
    assert cfg.committed_index(acked_by({1: 10, 4: 10, 5: 10})) == 0


def test_joint_commits_the_minimum_of_both_halves() -> None:
    joint = JointConfig(MajorityConfig([1, 2, 3]), MajorityConfig([3, 4, 5]))
    acks = {1: 10, 2: 10, 3: 6, 4: 4, 5: 5}
    assert joint.incoming.committed_index(acked_by(acks)) == 10
    assert joint.outgoing.committed_index(acked_by(acks)) == 5
    assert joint.committed_index(acked_by(acks)) == 5
    acks = {1: 3, 2: 2, 3: 9, 4: 9, 5: 9}
    assert joint.committed_index(acked_by(acks)) == 3


def test_joint_with_empty_outgoing_behaves_like_incoming() -> None:
    joint = JointConfig(MajorityConfig([1, 2, 3]))
    assert not joint.is_joint()
    assert joint.committed_index(acked_by({1: 4, 2: 7})) == 4
    assert JointConfig().committed_index(acked_by({})) == MAX_INDEX


def test_joint_ids_are_the_union_of_both_halves() -> None:
    joint = JointConfig(MajorityConfig([1, 2]), MajorityConfig([2, 3]))
    assert joint.is_joint()
    assert joint.ids() == {1, 2, 3}


def test_empty_majority_wins_every_vote() -> None:
    assert MajorityConfig().vote_result({}) == WON
    assert MajorityConfig().vote_result({1: False}) == WON


def test_single_voter_vote_results() -> None:
    cfg = MajorityConfig([1])
    assert cfg.vote_result({}) == PENDING
    assert cfg.vote_result({1: True}) == WON
    assert cfg.vote_result({1: False}) == LOST


def test_three_voter_vote_results() -> None:
    cfg = MajorityConfig([1, 2, 3])
    assert cfg.vote_result({}) == PENDING
    assert cfg.vote_result({1: True}) == PENDING
    assert cfg.vote_result({1: True, 2: False}) == PENDING
    assert cfg.vote_result({1: True, 2: True}) == WON
    assert cfg.vote_result({1: False, 2: False}) == LOST
    assert cfg.vote_result({1: True, 2: False, 3: False}) == LOST
    # Votes from outside the config never count.
    assert cfg.vote_result({1: True, 4: True, 5: True}) == PENDING


def test_four_voters_split_two_two_is_lost() -> None:
    cfg = MajorityConfig([1, 2, 3, 4])
    assert cfg.vote_result({1: True, 2: True, 3: False, 4: False}) == LOST
    assert cfg.vote_result({1: True, 2: True, 3: False}) == PENDING
    assert cfg.vote_result({1: True, 2: True, 3: True}) == WON


def test_joint_vote_needs_both_halves_and_loses_if_either_loses() -> None:
    joint = JointConfig(MajorityConfig([1, 2, 3]), MajorityConfig([3, 4, 5]))
    assert joint.vote_result({}) == PENDING
    # Incoming won, outgoing pending.
    assert joint.vote_result({1: True, 2: True}) == PENDING
    # Both won.
    assert joint.vote_result({1: True, 2: True, 4: True, 5: True}) == WON
    assert joint.vote_result({1: True, 3: True, 4: True}) == WON
    # Incoming won, outgoing lost.
    assert joint.vote_result({1: True, 2: True, 4: False, 5: False}) == LOST
    # Incoming lost, outgoing pending.
    assert joint.vote_result({1: False, 2: False}) == LOST
    # Incoming pending, outgoing lost.
    assert joint.vote_result({1: True, 4: False, 5: False}) == LOST


def test_joint_vote_with_empty_outgoing_is_the_incoming_result() -> None:
    joint = JointConfig(MajorityConfig([1, 2, 3]))
    assert joint.vote_result({1: True}) == PENDING
    assert joint.vote_result({1: True, 2: True}) == WON
    assert joint.vote_result({1: False, 2: False}) == LOST


def brute_force_committed(voters: set[int], acks: dict[int, int]) -> int:
    """Largest index held by a strict majority of voters (0 if none)."""
    best = 0
    for candidate in {0, *acks.values()}:
        holders = sum(1 for v in voters if acks.get(v, 0) >= candidate)
        if holders > len(voters) // 2:
            best = max(best, candidate)
    return best


def brute_force_vote(voters: set[int], votes: dict[int, bool]) -> VoteResult:
    yes = sum(1 for v in voters if votes.get(v) is True)
    no = sum(1 for v in voters if votes.get(v) is False)
    if 2 * yes > len(voters):
        return WON
    if 2 * no >= len(voters):
        return LOST
    return PENDING


voter_sets = st.sets(st.integers(1, 9), min_size=1, max_size=7)
ack_maps = st.dictionaries(st.integers(1, 12), st.integers(0, 20))


@given(voters=voter_sets, acks=ack_maps)
def test_committed_index_is_largest_index_acked_by_a_majority(
    voters: set[int], acks: dict[int, int]
) -> None:
    assert MajorityConfig(voters).committed_index(acks.get) == brute_force_committed(voters, acks)


@given(incoming=voter_sets, outgoing=voter_sets, acks=ack_maps)
def test_joint_committed_index_is_largest_index_acked_by_both_majorities(
    incoming: set[int], outgoing: set[int], acks: dict[int, int]
) -> None:
    joint = JointConfig(MajorityConfig(incoming), MajorityConfig(outgoing))
    expected = min(brute_force_committed(incoming, acks), brute_force_committed(outgoing, acks))
    assert joint.committed_index(acks.get) == expected


@given(voters=voter_sets, votes=st.dictionaries(st.integers(1, 12), st.booleans()))
def test_vote_result_matches_counting_definition(voters: set[int], votes: dict[int, bool]) -> None:
    assert MajorityConfig(voters).vote_result(votes) == brute_force_vote(voters, votes)
