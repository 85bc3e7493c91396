"""Progress of one follower: state transitions, acks, rejections and flow control."""

from __future__ import annotations

import pytest

from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.types import ProgressState

PROBE, REPLICATE, SNAPSHOT = ProgressState.PROBE, ProgressState.REPLICATE, ProgressState.SNAPSHOT


def make(
    state: ProgressState = PROBE,
    *,
    match: int = 0,
    next: int = 1,
    window: int = 256,
    pending_snapshot: int = 0,
) -> Progress:
    pr = Progress(next, Inflights(window), match=match)
    pr.state = state
    pr.pending_snapshot = pending_snapshot
    return pr


def test_new_progress_starts_in_probe_unpaused() -> None:
    pr = Progress(10, Inflights(4), match=3, is_learner=True, recent_active=True)
    assert (pr.match, pr.next, pr.state) == (3, 10, PROBE)
    assert (pr.pending_snapshot, pr.sent_commit) == (0, 0)
    assert pr.is_learner and pr.recent_active
    assert not pr.msg_app_flow_paused
    assert not pr.is_paused()


def test_progress_requires_match_below_next() -> None:
    with pytest.raises(ValueError):
        Progress(5, Inflights(1), match=5)


def test_become_probe_from_replicate_restarts_after_match() -> None:
    pr = make(REPLICATE, match=1, next=5)
    pr.inflights.add(4, 10)
    pr.become_probe()
    assert (pr.state, pr.match, pr.next) == (PROBE, 1, 2)
    assert pr.inflights.count() == 0


def test_become_probe_from_snapshot_resumes_after_the_snapshot() -> None:
    pr = make(match=1, next=5)
    pr.become_snapshot(10)
    pr.become_probe()
    assert (pr.state, pr.match, pr.next, pr.pending_snapshot) == (PROBE, 1, 11, 0)


def test_become_probe_from_snapshot_never_goes_below_match() -> None:
    pr = make(match=15, next=16)
    pr.become_snapshot(10)
    pr.become_probe()
    assert (pr.state, pr.next) == (PROBE, 16)


def test_become_probe_clears_pause() -> None:
    pr = make(match=1, next=2)
    pr.sent_entries(1, 10)
    assert pr.msg_app_flow_paused
    pr.become_probe()
    assert not pr.msg_app_flow_paused


def test_become_replicate_sends_from_match_plus_one() -> None:
    pr = make(match=1, next=5)
    pr.msg_app_flow_paused = True
    pr.become_replicate()
    assert (pr.state, pr.match, pr.next) == (REPLICATE, 1, 2)
    assert not pr.msg_app_flow_paused
    assert pr.inflights.count() == 0


def test_become_snapshot_pauses_and_records_pending_index() -> None:
    pr = make(REPLICATE, match=3, next=7)
    pr.inflights.add(6, 1)
    pr.become_snapshot(20)
    assert (pr.state, pr.match, pr.next, pr.pending_snapshot) == (SNAPSHOT, 3, 7, 20)
    assert pr.inflights.count() == 0
    assert pr.is_paused()


def test_sent_entries_in_replicate_advances_next_and_fills_window() -> None:
    pr = make(REPLICATE, match=5, next=6)
    pr.sent_entries(3, 300)
    assert pr.next == 9
    assert pr.inflights.count() == 1
    assert pr.inflights.bytes() == 300
    pr.sent_entries(2, 20)
    assert pr.next == 11
    assert pr.inflights.count() == 2
    pr.inflights.free_le(8)
    assert pr.inflights.count() == 1
    assert not pr.msg_app_flow_paused


def test_sent_entries_without_entries_in_replicate_changes_nothing() -> None:
    pr = make(REPLICATE, match=5, next=6)
    pr.sent_entries(0, 0)
    assert pr.next == 6
    assert pr.inflights.count() == 0
    assert not pr.is_paused()


def test_probe_pauses_after_any_append_even_an_empty_one() -> None:
    pr = make(PROBE, match=0, next=4)
    pr.sent_entries(0, 0)
    assert pr.msg_app_flow_paused and pr.is_paused()
    pr.msg_app_flow_paused = False
    pr.sent_entries(2, 50)
    assert pr.is_paused()
    # A probe does not advance next nor use the window.
    assert pr.next == 4
    assert pr.inflights.count() == 0


def test_sent_entries_in_snapshot_changes_nothing() -> None:
    pr = make(SNAPSHOT, match=2, next=5, pending_snapshot=9)
    pr.sent_entries(3, 30)
    assert (pr.next, pr.inflights.count(), pr.msg_app_flow_paused) == (5, 0, False)


@pytest.mark.parametrize(
    ("n", "updated", "match", "next"),
    [
        (2, False, 3, 5),  # older ack
        (3, False, 3, 5),  # same ack
        (4, True, 4, 5),  # ack inside the in-flight range
        (5, True, 5, 6),  # ack moves next along
        (8, True, 8, 9),  # ack beyond next
    ],
)
def test_maybe_update(n: int, updated: bool, match: int, next: int) -> None:
    pr = make(match=3, next=5)
    pr.msg_app_flow_paused = True
    assert pr.maybe_update(n) is updated
    assert (pr.match, pr.next) == (match, next)
    assert pr.msg_app_flow_paused is not updated


@pytest.mark.parametrize(
    ("rejected", "hint", "decreased", "next"),
    [
        (5, 5, False, 10),  # rejection of an index already matched: stale
        (4, 4, False, 10),  # older still: stale
        (9, 9, True, 6),  # genuine: rewind to match+1
        (9, 2, True, 6),  # the hint is ignored in replicate
    ],
)
def test_maybe_decr_to_in_replicate(rejected: int, hint: int, decreased: bool, next: int) -> None:
    pr = make(REPLICATE, match=5, next=10)
    assert pr.maybe_decr_to(rejected, hint) is decreased
    assert (pr.state, pr.match, pr.next) == (REPLICATE, 5, next)


@pytest.mark.parametrize(
    ("match", "next", "rejected", "hint", "decreased", "new_next"),
    [
        (0, 1, 0, 0, True, 1),  # probe at the very start of the log
        (0, 10, 5, 5, False, 10),  # not the last probe: stale
        (0, 10, 10, 10, False, 10),  # beyond the last probe: stale
        (0, 10, 9, 9, True, 9),  # follower's log ends at 9
        (0, 10, 9, 2, True, 3),  # follower's hint: might match up to 2
        (0, 10, 9, 0, True, 1),
        (0, 10, 9, 20, True, 9),  # a hint above the rejected index never raises next
        (5, 10, 9, 1, True, 6),  # never below match+1
    ],
)
def test_maybe_decr_to_in_probe(
    match: int, next: int, rejected: int, hint: int, decreased: bool, new_next: int
) -> None:
    pr = make(PROBE, match=match, next=next)
    pr.msg_app_flow_paused = True
    assert pr.maybe_decr_to(rejected, hint) is decreased
    assert (pr.state, pr.match, pr.next) == (PROBE, match, new_next)
    # A genuine rejection lets the next probe go out at once.
    assert pr.msg_app_flow_paused is not decreased


def test_maybe_decr_to_in_snapshot_only_counts_rejection_of_next_minus_one() -> None:
    pr = make(SNAPSHOT, match=2, next=8, pending_snapshot=20)
    assert not pr.maybe_decr_to(5, 3)
    assert pr.next == 8
    assert pr.maybe_decr_to(7, 4)
    assert (pr.state, pr.next, pr.pending_snapshot) == (SNAPSHOT, 5, 20)
    assert pr.is_paused()


def test_is_paused_in_probe_follows_the_flow_flag() -> None:
    pr = make(PROBE)
    assert not pr.is_paused()
    pr.msg_app_flow_paused = True
    assert pr.is_paused()


def test_is_paused_in_replicate_only_when_window_full() -> None:
    pr = make(REPLICATE, window=2)
    pr.msg_app_flow_paused = True
    assert not pr.is_paused()
    pr.sent_entries(1, 1)
    assert not pr.is_paused()
    pr.sent_entries(1, 1)
    assert pr.is_paused()


def test_is_paused_in_snapshot_always() -> None:
    assert make(SNAPSHOT, pending_snapshot=3).is_paused()


def test_heartbeat_response_frees_one_slot_when_window_full() -> None:
    pr = make(REPLICATE, match=0, next=1, window=3)
    for _ in range(3):
        pr.sent_entries(1, 10)
    assert pr.next == 4
    assert pr.is_paused()
    pr.inflights.free_first_one()
    assert not pr.is_paused()
    pr.sent_entries(1, 10)
    assert pr.next == 5
    assert pr.is_paused()
    # The ack of index 3 frees the first three appends (1, 2 were freed or acked).
    assert pr.maybe_update(3)
    pr.inflights.free_le(3)
    assert pr.inflights.count() == 1
    assert not pr.is_paused()


def test_can_bump_commit_up_to_next_minus_one() -> None:
    pr = make(REPLICATE, match=5, next=6)
    assert pr.can_bump_commit(3)
    pr.record_sent_commit(3)
    assert pr.sent_commit == 3
    assert not pr.can_bump_commit(3)
    assert not pr.can_bump_commit(2)
    assert pr.can_bump_commit(10)
    pr.record_sent_commit(10)
    # The follower holds nothing past next-1 = 5, so it cannot commit further yet.
    assert pr.sent_commit == 5
    assert not pr.can_bump_commit(10)
    pr.sent_entries(2, 20)
    assert pr.can_bump_commit(10)
    pr.record_sent_commit(4)
    assert pr.sent_commit == 5


def test_rewinding_next_rewinds_sent_commit() -> None:
    pr = make(REPLICATE, match=2, next=10)
    pr.record_sent_commit(8)
    assert pr.maybe_decr_to(9, 9)
    assert (pr.next, pr.sent_commit) == (3, 2)
    pr = make(REPLICATE, match=2, next=10)
    pr.record_sent_commit(8)
    pr.become_probe()
    assert (pr.next, pr.sent_commit) == (3, 2)
    pr = make(PROBE, match=0, next=10)
    pr.record_sent_commit(9)
    assert pr.maybe_decr_to(9, 4)
    assert (pr.next, pr.sent_commit) == (5, 4)


def test_repr_reads_like_etcd() -> None:
    pr = make(REPLICATE, match=5, next=6, window=2)
    pr.recent_active = True
    assert repr(pr) == "StateReplicate match=5 next=6"
    pr.sent_entries(1, 1)
    pr.sent_entries(1, 1)
    assert repr(pr) == "StateReplicate match=5 next=8 paused inflight=2[full]"
    pr.is_learner = True
    pr.recent_active = False
    pr.become_snapshot(9)
    assert repr(pr) == "StateSnapshot match=5 next=8 learner paused pendingSnap=9 inactive"
    assert repr(make(PROBE, match=0, next=1)) == "StateProbe match=0 next=1 inactive"


def test_clone_is_independent() -> None:
    pr = make(REPLICATE, match=4, next=5)
    pr.sent_entries(2, 20)
    pr.record_sent_commit(5)
    copy = pr.clone()
    assert repr(copy) == repr(pr)
    assert (copy.sent_commit, copy.inflights.count(), copy.state) == (5, 1, REPLICATE)
    copy.maybe_update(6)
    copy.inflights.free_le(6)
    assert (pr.match, pr.inflights.count()) == (4, 1)
