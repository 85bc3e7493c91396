"""RawNode.bootstrap builds the same member as adding each peer by a validated change."""

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
    RawNode,
)
from multiraft.raft.progress import Progress
from raft_harness import new_test_config
from storage import MemoryStorage

#: A byte window too, so the copied inflights carry both limits.
_WINDOW = {"max_size_per_msg": 1 << 16, "max_inflight_bytes": 1 << 20}


def _reference_bootstrap(rn: RawNode, peers: list[int]) -> None:
    """The step-by-step bootstrap: append the entries, then one simple change per peer."""
    from multiraft.raft.types import EMPTY_HARD_STATE

    r = rn.raft
    rn._prev_hard_state = EMPTY_HARD_STATE
    r.become_follower(1, NONE)
    r.raft_log.append(
        [
            Entry(
                1, i + 1, EntryType.CONF_CHANGE, ConfChange(ConfChangeType.ADD_NODE, p).to_bytes()
            )
            for i, p in enumerate(peers)
        ]
    )
    r.raft_log.committed = len(peers)
    for p in peers:
        r.apply_conf_change(ConfChange(ConfChangeType.ADD_NODE, p).as_v2())


def _progress_fields(pr: Progress) -> tuple[object, ...]:
    return (
        pr.match,
        pr.next,
        pr.state,
        pr.pending_snapshot,
        pr.recent_active,
        pr.msg_app_flow_paused,
        pr.is_learner,
        pr.sent_commit,
        pr.inflights.size,
        pr.inflights.max_bytes,
        pr.inflights.count(),
    )


@pytest.mark.parametrize("peers", [[1], [1, 2, 3], [3, 1, 2], [1, 2, 3, 4, 5], [2, 7]])
def test_bootstrap_equals_adding_each_peer_by_a_conf_change(peers: list[int]) -> None:
    fast = RawNode(new_test_config(1, 10, 1, MemoryStorage(), **_WINDOW))
    slow = RawNode(new_test_config(1, 10, 1, MemoryStorage(), **_WINDOW))
    fast.bootstrap(peers)
    _reference_bootstrap(slow, peers)
    f, s = fast.raft, slow.raft
    assert f.trk.config == s.trk.config
    assert f.trk.conf_state() == s.trk.conf_state() == ConfState(voters=tuple(sorted(peers)))
    assert sorted(f.trk.progress) == sorted(s.trk.progress) == sorted(peers)
    for pid in peers:
        assert _progress_fields(f.trk.progress[pid]) == _progress_fields(s.trk.progress[pid])
    assert (f.term, f.vote, f.lead, f.state, f.is_learner) == (
        s.term,
        s.vote,
        s.lead,
        s.state,
        s.is_learner,
    )
    rd_fast, rd_slow = fast.ready(), slow.ready()
    assert rd_fast == rd_slow
    assert rd_fast.hard_state == HardState(term=1, vote=NONE, commit=len(peers))
    assert [e.data for e in rd_fast.entries] == [
        ConfChange(ConfChangeType.ADD_NODE, p).to_bytes() for p in peers
    ]


def test_bootstrap_of_a_member_that_is_not_a_peer_tracks_only_the_peers() -> None:
    rn = RawNode(new_test_config(9, 10, 1, MemoryStorage()))
    rn.bootstrap([1, 2, 3])
    assert sorted(rn.raft.trk.progress) == [1, 2, 3]
    assert not rn.raft.is_learner
    assert not rn.raft.promotable()
