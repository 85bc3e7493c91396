"""``durable_quorum_index``: what a leader may apply while its own log write is in flight.

The leader's progress counts entries it appended but has not persisted; the
index returned counts them only up to what it persisted, so everything at or
below it is durable on a quorum of voters.
"""

from __future__ import annotations

from multiraft.commits_during_write import durable_quorum_index
from multiraft.raft.raft import Raft
from raft_scenarios import leader_of, propose


def _leader_with_entries(peers: list[int], count: int) -> Raft:
    r = leader_of(peers)
    for _ in range(count):
        propose(r)
    r.read_messages()
    return r


def test_both_followers_of_three_must_hold_an_index_the_leader_has_not_persisted() -> None:
    r = _leader_with_entries([1, 2, 3], 4)
    last = r.raft_log.last_index()
    assert last == 5
    assert r.trk.progress[1].match == 5
    r.trk.progress[2].match = 5
    r.trk.progress[3].match = 4
    # Persisted up to 3 here: 4 is on both followers, 5 on one only.
    assert durable_quorum_index(r, 3) == 4
    # The leader's progress is left as it was.
    assert r.trk.progress[1].match == 5
    assert r.trk.committed() == 5
    r.trk.progress[3].match = 2
    assert durable_quorum_index(r, 3) == 3


def test_it_is_never_below_what_the_leader_persisted() -> None:
    r = _leader_with_entries([1, 2, 3], 4)
    r.trk.progress[2].match = 0
    r.trk.progress[3].match = 0
    assert durable_quorum_index(r, 4) == 4
    # Nothing unpersisted on the leader: what it persisted is the answer.
    assert durable_quorum_index(r, 5) == 5


def test_five_voters_need_three_followers_past_the_leaders_persisted_index() -> None:
    r = _leader_with_entries([1, 2, 3, 4, 5], 6)
    assert r.raft_log.last_index() == 7
    for peer, match in ((2, 7), (3, 7), (4, 2), (5, 1)):
        r.trk.progress[peer].match = match
    assert durable_quorum_index(r, 2) == 2
    r.trk.progress[4].match = 6
    assert durable_quorum_index(r, 2) == 6
    assert r.trk.progress[1].match == 7


def test_a_leader_outside_the_tracked_members_counts_only_its_persisted_index() -> None:
    r = _leader_with_entries([1, 2, 3], 2)
    progress = r.trk.progress.pop(1)
    try:
        assert durable_quorum_index(r, 1) == 1
    finally:
        r.trk.progress[1] = progress
