"""Progress transitions driven through the raft: responses, rejections, hints, heartbeats."""

from __future__ import annotations

from multiraft.raft import (
    Config,
    Entry,
    HardState,
    MessageType,
    ProgressState,
    RawNode,
    StateType,
)
from multiraft.raft.raft import Raft
from raft_harness import new_storage, new_test_raft
from raft_scenarios import entry_indexes, leader_of, peer_msg, propose

MT = MessageType
PROBE = ProgressState.PROBE
REPLICATE = ProgressState.REPLICATE


def leader_with_follower_behind() -> Raft:
    """Leader 1 of (1, 2) at term 1; 2 replicates with match 1, entries 2..4 in flight."""
    r = leader_of([1, 2])
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=1))
    for _ in range(3):
        propose(r)
    r.read_messages()
    pr = r.trk.progress[2]
    assert (pr.state, pr.match, pr.next, pr.inflights.count()) == (REPLICATE, 1, 5, 3)
    return r


def test_successful_append_response_moves_probe_to_replicate() -> None:
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    assert (pr.state, pr.match, pr.next) == (PROBE, 0, 1)
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=1))
    assert (pr.state, pr.match, pr.next) == (REPLICATE, 1, 2)
    assert r.raft_log.committed == 1
    # The new commit index goes out at once.
    msgs = r.read_messages()
    assert [(m.type, m.index, m.commit, entry_indexes(m)) for m in msgs] == [(MT.APP, 1, 1, [])]


def test_rejection_in_replicate_falls_back_to_probe_from_the_hint() -> None:
    r = leader_with_follower_behind()
    pr = r.trk.progress[2]
    # The follower lost the appends after 1 and rejects the one that followed 3.
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=3, reject=True, reject_hint=1, log_term=1))
    assert (pr.state, pr.match) == (PROBE, 1)
    assert pr.inflights.count() == 0
    msgs = r.read_messages()
    assert [(m.type, m.index, m.log_term, entry_indexes(m)) for m in msgs] == [
        (MT.APP, 1, 1, [2, 3, 4])
    ]
    assert pr.msg_app_flow_paused
    assert pr.next == 2


def test_stale_rejection_in_replicate_is_ignored() -> None:
    r = leader_with_follower_behind()
    pr = r.trk.progress[2]
    # A rejection of an append at or below match comes from before the follower caught up.
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=1, reject=True, reject_hint=0, log_term=0))
    assert r.read_messages() == []
    assert (pr.state, pr.match, pr.next, pr.inflights.count()) == (REPLICATE, 1, 5, 3)


def test_rejection_of_an_older_probe_is_ignored_in_probe() -> None:
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    propose(r)
    r.read_messages()
    assert (pr.state, pr.next) == (PROBE, 1)
    # The outstanding probe is at index 0 (next - 1); a rejection of index 5 is not about it.
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=5, reject=True, reject_hint=0, log_term=0))
    assert r.read_messages() == []
    assert (pr.state, pr.next, pr.msg_app_flow_paused) == (PROBE, 1, True)


def test_unreachable_moves_replicate_to_probe() -> None:
    storage = new_storage([1, 2], entries=[Entry(1, i) for i in (1, 2, 3)])
    storage.set_hard_state(HardState(term=1))
    rn = RawNode(Config(id=1, storage=storage, election_tick=10, heartbeat_tick=1))
    r = rn.raft
    r.become_candidate()
    r.become_leader()
    r.read_messages()
    pr = r.trk.progress[2]
    pr.match = 3
    pr.become_replicate()
    pr.sent_entries(2, 32)  # entries 4 and 5 sent optimistically
    assert (pr.next, pr.inflights.count()) == (6, 1)
    rn.report_unreachable(2)
    assert (pr.state, pr.match, pr.next) == (PROBE, 3, 4)
    assert pr.inflights.count() == 0
    assert r.read_messages() == []


def test_unreachable_leaves_probe_alone() -> None:
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    r.send_append(2)
    r.read_messages()
    assert (pr.state, pr.next, pr.msg_app_flow_paused) == (PROBE, 1, True)
    r.step(peer_msg(MT.UNREACHABLE, 2, 1, 0))
    assert (pr.state, pr.match, pr.next, pr.msg_app_flow_paused) == (PROBE, 0, 1, True)
    assert r.read_messages() == []


def test_heartbeat_carries_min_of_match_and_commit_per_follower() -> None:
    r = leader_of([1, 2, 3])
    for _ in range(3):
        propose(r)
    r.read_messages()
    assert r.raft_log.last_index() == 4
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=4))
    r.read_messages()
    assert r.raft_log.committed == 4
    r.step(peer_msg(MT.BEAT, 1, 1, 0))
    beats = {m.to: m for m in r.read_messages()}
    assert {to: (m.type, m.commit) for to, m in beats.items()} == {
        2: (MT.HEARTBEAT, 4),
        3: (MT.HEARTBEAT, 0),  # 3 has nothing yet: it must not learn commit 4
    }
    assert all((m.index, m.log_term, m.entries) == (0, 0, ()) for m in beats.values())
    r.step(peer_msg(MT.APP_RESP, 3, 1, 1, index=2))
    r.read_messages()
    r.step(peer_msg(MT.BEAT, 1, 1, 0))
    assert {m.to: m.commit for m in r.read_messages()} == {2: 4, 3: 2}


def follower_with_committed_log() -> Raft:
    """Follower 2 of (1, 2) at term 1 holding entries 1..3 (term 1), all committed."""
    r = new_test_raft(2, peers=[1, 2])
    r.step(
        peer_msg(
            MT.APP,
            1,
            2,
            1,
            index=0,
            log_term=0,
            entries=tuple(Entry(1, i) for i in (1, 2, 3)),
            commit=3,
        )
    )
    r.read_messages()
    assert (r.raft_log.committed, r.raft_log.last_index(), r.lead) == (3, 3, 1)
    return r


def test_follower_answers_append_below_its_commit_with_its_commit_index() -> None:
    r = follower_with_committed_log()
    r.step(peer_msg(MT.APP, 1, 2, 1, index=1, log_term=1, entries=(Entry(1, 2),), commit=1))
    msgs = r.read_messages()
    assert [(m.type, m.to, m.index, m.reject) for m in msgs] == [(MT.APP_RESP, 1, 3, False)]
    assert (r.raft_log.committed, r.raft_log.last_index()) == (3, 3)


def test_follower_does_not_reject_append_below_commit_even_with_unknown_prev_term() -> None:
    r = follower_with_committed_log()
    # A duplicate of a very old append whose prev term this follower cannot match.
    r.step(peer_msg(MT.APP, 1, 2, 1, index=0, log_term=7, commit=0))
    msgs = r.read_messages()
    assert [(m.type, m.index, m.reject) for m in msgs] == [(MT.APP_RESP, 3, False)]


def test_follower_rejection_hint_skips_a_whole_divergent_term() -> None:
    # Leader log terms by index:   1 1 1 4 4 4 4 (+5 empty at 8)
    # Follower log terms by index: 1 1 1 2 2 2 3 3 3
    leader_store = new_storage(
        [1, 2], entries=[Entry(t, i + 1) for i, t in enumerate([1] * 3 + [4] * 4)]
    )
    leader_store.set_hard_state(HardState(term=4))
    leader = leader_of([1, 2], leader_store)
    assert (leader.term, leader.raft_log.last_index()) == (5, 8)
    follower_terms = [1] * 3 + [2] * 3 + [3] * 3
    follower_store = new_storage(
        [1, 2], entries=[Entry(t, i + 1) for i, t in enumerate(follower_terms)]
    )
    follower_store.set_hard_state(HardState(term=3))
    follower = new_test_raft(2, 10, 1, follower_store)

    leader.send_append(2)
    (probe,) = leader.read_messages()
    assert (probe.type, probe.index, probe.log_term, entry_indexes(probe)) == (MT.APP, 7, 4, [8])
    follower.step(probe)
    (rej,) = follower.read_messages()
    # Index 7 holds term 3 here: the hint names it and its term.
    assert (rej.type, rej.reject, rej.index, rej.reject_hint, rej.log_term) == (
        MT.APP_RESP,
        True,
        7,
        7,
        3,
    )
    assert follower.state == StateType.FOLLOWER and follower.term == 5
    leader.step(rej)
    (second,) = leader.read_messages()
    # The leader has no entry of term <= 3 after index 3: it jumps straight there,
    # skipping the follower's whole terms 2 and 3.
    assert (second.type, second.index, second.log_term, entry_indexes(second)) == (
        MT.APP,
        3,
        1,
        [4, 5, 6, 7, 8],
    )
    follower.step(second)
    (ack,) = follower.read_messages()
    assert (ack.type, ack.reject, ack.index) == (MT.APP_RESP, False, 8)
    assert [follower.raft_log.term(i) for i in range(1, 9)] == [1, 1, 1, 4, 4, 4, 4, 5]
    assert follower.raft_log.last_index() == 8
    leader.step(ack)
    pr = leader.trk.progress[2]
    assert (pr.state, pr.match, pr.next) == (REPLICATE, 8, 9)
    assert leader.raft_log.committed == 8


def test_rejection_hint_from_a_short_follower_jumps_to_its_last_index() -> None:
    leader_store = new_storage([1, 2], entries=[Entry(1, i) for i in range(1, 11)])
    leader_store.set_hard_state(HardState(term=1))
    leader = leader_of([1, 2], leader_store)
    follower_store = new_storage([1, 2], entries=[Entry(1, 1), Entry(1, 2)])
    follower = new_test_raft(2, 10, 1, follower_store)
    leader.send_append(2)
    (probe,) = leader.read_messages()
    assert (probe.index, probe.log_term) == (10, 1)
    follower.step(probe)
    (rej,) = follower.read_messages()
    assert (rej.reject, rej.index, rej.reject_hint, rej.log_term) == (True, 10, 2, 1)
    leader.step(rej)
    (second,) = leader.read_messages()
    assert (second.index, second.log_term, entry_indexes(second)) == (2, 1, list(range(3, 12)))
    assert leader.trk.progress[2].next == 3
