"""A leader ignores append answers that cannot belong to what it has outstanding.

etcd's leader trusts every answer to be fresh: its transport never duplicates a
message. Ours may (the simulator and MemoryNetwork duplicate frames, and a
retrying transport could too), and so may any network that cuts appends short.
Two of etcd's rules then feed each other: in PROBE an acknowledgement of exactly
``match`` moves the follower to REPLICATE and fills the window, and a rejection
moves it back to PROBE with a fresh probe. Answers that cannot be news keep that
cycle turning, and every duplicate starts one more: a message storm.

So, unlike etcd:

* in PROBE an acknowledgement of ``match`` counts only when it answers the last
  probe, which is possible only for an empty probe sent from ``match + 1``;
* a rejection counts only for an append between ``match`` and ``next`` (the only
  ones sent in the current state) and only with a hint of at least ``match`` (a
  follower that holds ``match`` never hints lower).

Every other etcd behaviour stays: tests/test_progress.py pins the Progress rules
themselves, which are etcd's exactly; the filter sits in the leader in front of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from multiraft.raft import Entry, HardState, Message, MessageType, ProgressState
from multiraft.raft.inflights import Inflights
from multiraft.raft.progress import Progress
from multiraft.raft.raft import Raft
from raft_harness import new_storage, new_test_raft
from raft_scenarios import compacted_leader, leader_of, peer_msg, propose

MT = MessageType
PROBE = ProgressState.PROBE
REPLICATE = ProgressState.REPLICATE
SNAPSHOT = ProgressState.SNAPSHOT


def sent(r: Raft) -> list[tuple[MT, int, int, int, int]]:
    """Take the outgoing messages as (type, to, index, log_term, number of entries)."""
    return [(m.type, m.to, m.index, m.log_term, len(m.entries)) for m in r.read_messages()]


def progress_of(pr: Progress) -> tuple[ProgressState, int, int, bool, int]:
    """(state, match, next, paused, appends in flight) of one follower."""
    return (pr.state, pr.match, pr.next, pr.msg_app_flow_paused, pr.inflights.count())


def ack(index: int, term: int = 1) -> Message:
    """Follower 2 acknowledges ``index`` to leader 1."""
    return peer_msg(MT.APP_RESP, 2, 1, term, index=index)


def rejection(index: int, hint: int, log_term: int, term: int = 1) -> Message:
    """Follower 2 rejects the append at ``index``, hinting it may match up to ``hint``."""
    return peer_msg(
        MT.APP_RESP, 2, 1, term, index=index, reject=True, reject_hint=hint, log_term=log_term
    )


def probing_with_entries() -> Raft:
    """Leader 1 of (1, 2), one entry per append; follower 2 fell back to PROBE at match 1.

    2 replicated index 1, then rejected the append after 2 (it never got 2); the
    leader answered with one probe carrying entry 2.
    """
    r = leader_of([1, 2], max_size_per_msg=0)
    pr = r.trk.progress[2]
    r.step(ack(1))
    propose(r)
    propose(r)
    assert sent(r) == [(MT.APP, 2, 1, 1, 0), (MT.APP, 2, 1, 1, 1), (MT.APP, 2, 2, 1, 1)]
    assert progress_of(pr) == (REPLICATE, 1, 4, False, 2)
    r.step(rejection(2, hint=1, log_term=1))
    assert sent(r) == [(MT.APP, 2, 1, 1, 1)]
    assert progress_of(pr) == (PROBE, 1, 2, True, 0)
    return r


def elected_with_log(terms: list[int], **kw: Any) -> Raft:
    """Leader 1 of (1, 2), one entry per append, elected over a log of entries of ``terms``.

    It has appended its empty entry and sent its first probe (not yet read).
    """
    s = new_storage([1, 2], entries=[Entry(t, i) for i, t in enumerate(terms, 1)])
    s.set_hard_state(HardState(term=terms[-1]))
    r = new_test_raft(1, 10, 1, s, max_size_per_msg=0, **kw)
    r.become_candidate()
    r.become_leader()
    r.bcast_append()
    return r


def caught_up_probe() -> Raft:
    """Leader 1 of (1, 2): 2 holds everything (index 1) but was reported unreachable,
    and a heartbeat response let one empty probe out from index 2."""
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    r.step(ack(1))
    r.read_messages()
    r.step(peer_msg(MT.UNREACHABLE, 2, 1, 0))
    assert progress_of(pr) == (PROBE, 1, 2, False, 0)
    r.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 1))
    assert sent(r) == [(MT.APP, 2, 1, 1, 0)]
    assert progress_of(pr) == (PROBE, 1, 2, True, 0)
    return r


# ------------------------------------------------------------ the Progress rules


def test_a_probe_remembers_the_index_after_its_last_entry() -> None:
    pr = Progress(5, Inflights(4), match=4)
    assert pr.probe_next == 0
    pr.sent_entries(3, 0)
    assert (pr.probe_next, pr.next, pr.msg_app_flow_paused) == (8, 5, True)
    # A later probe (after a heartbeat response) replaces the record.
    pr.sent_entries(0, 0)
    assert pr.probe_next == 5
    assert pr.clone().probe_next == 5


@pytest.mark.parametrize(
    "enter",
    [
        Progress.become_probe,
        Progress.become_replicate,
        lambda pr: pr.become_snapshot(9),
        lambda pr: pr.restart(6, 5),
    ],
)
def test_every_change_of_state_forgets_the_probe(enter: Callable[[Progress], None]) -> None:
    pr = Progress(5, Inflights(4), match=4)
    pr.sent_entries(2, 0)
    assert pr.probe_next == 7
    enter(pr)
    assert pr.probe_next == 0


def test_replicate_keeps_no_probe_record() -> None:
    pr = Progress(5, Inflights(4), match=4)
    pr.become_replicate()
    pr.sent_entries(2, 10)
    assert (pr.probe_next, pr.next, pr.inflights.count()) == (0, 7, 1)


@pytest.mark.parametrize(
    ("match", "next", "probe_entries", "answered"),
    [
        (4, 5, 0, True),  # empty probe from match + 1: its acceptance is match itself
        (4, 5, 2, False),  # accepting it acknowledges 6
        (4, 9, 0, False),  # empty probe from 9: accepting it acknowledges 8
        (0, 1, 0, True),  # the very start of the log
    ],
)
def test_an_ack_of_match_answers_only_an_empty_probe_from_match_plus_one(
    match: int, next: int, probe_entries: int, answered: bool
) -> None:
    pr = Progress(next, Inflights(4), match=match)
    pr.sent_entries(probe_entries, 0)
    assert pr.probe_answered_by_match() is answered


def test_an_ack_of_match_answers_nothing_before_the_first_probe() -> None:
    # After a snapshot or an unreachable report no probe of this state went out yet,
    # even at match 0 (where "no record" and "probe from 1" must not be confused).
    for match in (0, 4):
        pr = Progress(match + 1, Inflights(4), match=match)
        assert not pr.probe_answered_by_match()


@pytest.mark.parametrize(
    ("rejected", "hint", "stale"),
    [
        (4, 4, True),  # at match: the follower holds match, so this is old
        (3, 3, True),  # below match
        (5, 4, False),  # the first append after match
        (9, 4, False),  # next - 1: an empty append may have gone out there
        (10, 10, True),  # at next: never sent in this state
        (12, 12, True),  # beyond next
        (7, 3, True),  # hint below match: written before the follower had match
        (7, 7, False),
    ],
)
def test_a_rejection_is_news_only_between_match_and_next_with_a_hint_at_least_match(
    rejected: int, hint: int, stale: bool
) -> None:
    pr = Progress(5, Inflights(4), match=4)
    pr.become_replicate()
    pr.sent_entries(5, 50)
    assert (pr.match, pr.next) == (4, 10)
    assert pr.is_stale_rejection(rejected, hint) is stale


# ------------------------------------------------------ acknowledgements in PROBE


def test_ack_of_match_is_ignored_while_a_probe_with_entries_is_outstanding() -> None:
    r = probing_with_entries()
    pr = r.trk.progress[2]
    # An answer to the append that carried no entries, duplicated or late: the
    # follower still holds only 1, which says nothing about the probe for 2.
    for _ in range(3):
        r.step(ack(1))
        assert sent(r) == []
        assert progress_of(pr) == (PROBE, 1, 2, True, 0)
    assert pr.probe_next == 3


def test_ack_of_the_probe_entries_moves_probe_to_replicate_and_sends_the_rest() -> None:
    r = probing_with_entries()
    pr = r.trk.progress[2]
    r.step(ack(1))
    r.step(ack(2))
    assert sent(r) == [(MT.APP, 2, 2, 1, 1)]
    assert progress_of(pr) == (REPLICATE, 2, 4, False, 1)
    assert r.raft_log.committed == 2


def test_ack_of_match_answering_an_empty_probe_moves_probe_to_replicate() -> None:
    r = caught_up_probe()
    pr = r.trk.progress[2]
    r.step(ack(1))
    # As in etcd: replicate again, and send the (empty) append the pause held back.
    assert sent(r) == [(MT.APP, 2, 1, 1, 0)]
    assert progress_of(pr) == (REPLICATE, 1, 2, False, 0)


def test_ack_of_match_answers_an_empty_probe_sent_before_the_log_grew() -> None:
    r = caught_up_probe()
    pr = r.trk.progress[2]
    propose(r)
    assert sent(r) == []  # the probe is outstanding
    r.step(ack(1))
    assert sent(r) == [(MT.APP, 2, 1, 1, 1)]
    assert progress_of(pr) == (REPLICATE, 1, 3, False, 1)


def test_duplicated_ack_of_match_after_the_switch_to_replicate_sends_nothing() -> None:
    r = caught_up_probe()
    pr = r.trk.progress[2]
    propose(r)
    r.step(ack(1))
    r.read_messages()
    r.step(ack(1))
    assert sent(r) == []
    assert progress_of(pr) == (REPLICATE, 1, 3, False, 1)


def test_ack_of_match_before_any_probe_is_ignored() -> None:
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    r.step(ack(1))
    r.read_messages()
    r.step(peer_msg(MT.UNREACHABLE, 2, 1, 0))
    # An answer to an append sent before the report: it does not show that what
    # followed it arrived, so the next probe (on a heartbeat response) decides.
    r.step(ack(1))
    assert sent(r) == []
    assert progress_of(pr) == (PROBE, 1, 2, False, 0)


def test_ack_of_match_from_a_follower_that_refused_a_snapshot_sends_no_second_snapshot() -> None:
    r = compacted_leader()
    pr = r.trk.progress[2]
    # 2 has nothing: the leader needs a snapshot for it.
    r.step(rejection(10, hint=0, log_term=0, term=2))
    assert sent(r) == [(MT.SNAP, 2, 0, 0, 0)]
    assert (pr.state, pr.pending_snapshot) == (SNAPSHOT, 10)
    r.step(peer_msg(MT.SNAP_STATUS, 2, 1, 0))
    assert progress_of(pr) == (PROBE, 0, 11, True, 0)
    # 2 refused the snapshot (it answers with its commit index, 0). etcd moves it
    # to REPLICATE from index 1, which is compacted: another snapshot at once, and
    # the same answer, for as long as the follower refuses.
    r.step(ack(0, term=2))
    assert sent(r) == []
    assert progress_of(pr) == (PROBE, 0, 11, True, 0)
    # The next heartbeat response lets one probe out.
    r.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 2))
    assert sent(r) == [(MT.APP, 2, 10, 1, 1)]
    assert progress_of(pr) == (PROBE, 0, 11, True, 0)


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    "stale",
    [
        # The duplicate of the rejection that started PROBE: etcd ignores it too.
        rejection(2, hint=1, log_term=1),
        # The probe is at index 1 (next - 1), which 2 acknowledged: a rejection
        # there is older than that acknowledgement. etcd would send the probe again.
        rejection(1, hint=1, log_term=1),
    ],
    ids=["duplicate-of-the-last-rejection", "rejection-of-match"],
)
def test_stale_rejection_in_probe_sends_no_second_probe(stale: Message) -> None:
    r = probing_with_entries()
    pr = r.trk.progress[2]
    r.step(stale)
    assert sent(r) == []
    assert progress_of(pr) == (PROBE, 1, 2, True, 0)


def test_stale_rejection_with_a_hint_below_match_is_ignored_in_replicate() -> None:
    r = elected_with_log([1, 1, 1, 1])
    pr = r.trk.progress[2]
    assert sent(r) == [(MT.APP, 2, 4, 1, 1)]
    # 2 holds only 1..2 and rejects the probe at 4; the answer is duplicated.
    stale = rejection(4, hint=2, log_term=1, term=2)
    r.step(stale)
    assert sent(r) == [(MT.APP, 2, 2, 1, 1)]
    assert progress_of(pr) == (PROBE, 0, 3, True, 0)
    r.step(ack(3, term=2))
    assert sent(r) == [(MT.APP, 2, 3, 1, 1), (MT.APP, 2, 4, 1, 1)]
    assert progress_of(pr) == (REPLICATE, 3, 6, False, 2)
    # The duplicate arrives now: 2 wrote it when it held only up to 2. etcd would
    # rewind to PROBE at 4 and send the entry at 4 again.
    r.step(attrs.evolve(stale))
    assert sent(r) == []
    assert progress_of(pr) == (REPLICATE, 3, 6, False, 2)


def test_rejection_at_or_beyond_next_is_ignored_in_replicate() -> None:
    # Leader log: 1..3 of term 1, 4..8 of term 2, and its own empty entry 9 of term 3.
    r = elected_with_log([1, 1, 1, 2, 2, 2, 2, 2], max_inflight_msgs=2)
    pr = r.trk.progress[2]
    assert sent(r) == [(MT.APP, 2, 8, 2, 1)]
    # 2 holds 1..8 all of term 1: its hint skips the leader's whole term 2.
    stale = rejection(8, hint=8, log_term=1, term=3)
    r.step(stale)
    assert sent(r) == [(MT.APP, 2, 3, 1, 1)]
    r.step(ack(4, term=3))
    assert sent(r) == [(MT.APP, 2, 4, 2, 1), (MT.APP, 2, 5, 2, 1)]
    assert progress_of(pr) == (REPLICATE, 4, 7, False, 2)
    # Its hint is above match, but nothing at 8 was sent since the switch (next is 7).
    r.step(attrs.evolve(stale))
    assert sent(r) == []
    assert progress_of(pr) == (REPLICATE, 4, 7, False, 2)


def test_rejection_of_the_last_empty_append_still_falls_back_to_probe() -> None:
    r = leader_of([1, 2])
    pr = r.trk.progress[2]
    r.step(ack(1))
    r.read_messages()
    propose(r)
    propose(r)
    r.send_append(2)
    assert sent(r) == [(MT.APP, 2, 1, 1, 1), (MT.APP, 2, 2, 1, 1), (MT.APP, 2, 3, 1, 0)]
    assert progress_of(pr) == (REPLICATE, 1, 4, False, 2)
    r.step(rejection(3, hint=1, log_term=1))
    assert sent(r) == [(MT.APP, 2, 1, 1, 2)]
    assert progress_of(pr) == (PROBE, 1, 2, True, 0)


# ------------------------------------------------------------ the storm, replayed


def run_cut_short_and_duplicated(leader: Raft, follower: Raft, limit: int) -> tuple[int, int]:
    """Deliver in order until silence (or ``limit`` deliveries); return (deliveries, sent).

    Appends reach the follower without entries of the leader's term (as the
    simulator's stale-appends fault does) and every answer arrives twice.
    """
    queue = deque(leader.read_messages())
    sent_count = len(queue)
    deliveries = 0
    while queue and deliveries < limit:
        m = queue.popleft()
        deliveries += 1
        if m.to == follower.id:
            follower.step(attrs.evolve(m, entries=tuple(e for e in m.entries if e.term < m.term)))
            for answer in follower.read_messages():
                queue.extend((answer, attrs.evolve(answer)))
        else:
            leader.step(m)
            out = leader.read_messages()
            sent_count += len(out)
            queue.extend(out)
    return deliveries, sent_count


def test_cut_short_appends_with_duplicated_answers_end_in_one_paused_probe() -> None:
    # The shape of simulator seeds 1058, 223 and 228: the follower never receives the
    # leader's own entries, acknowledges match and rejects what follows, and every
    # answer is duplicated. Before the fix the leader flipped PROBE -> REPLICATE on
    # each acknowledgement of match and back on each rejection, endlessly, with one
    # more cycle per duplicate.
    storages = []
    for _ in range(2):
        s = new_storage([1, 2], entries=[Entry(1, 1)])
        s.set_hard_state(HardState(term=1))
        storages.append(s)
    leader = new_test_raft(1, 10, 1, storages[0], max_size_per_msg=0)
    follower = new_test_raft(2, 10, 1, storages[1], max_size_per_msg=0)
    leader.become_candidate()
    leader.become_leader()
    propose(leader)
    propose(leader)
    leader.bcast_append()
    deliveries, sent_count = run_cut_short_and_duplicated(leader, follower, limit=10_000)
    assert (deliveries, sent_count) == (15, 5)
    pr = leader.trk.progress[2]
    assert progress_of(pr) == (PROBE, 1, 2, True, 0)
    assert follower.raft_log.last_index() == 1
    # From here on one probe per heartbeat response, however often it is answered.
    leader.step(peer_msg(MT.HEARTBEAT_RESP, 2, 1, 2))
    assert sent(leader) == [(MT.APP, 2, 1, 1, 1)]
    for answer in (ack(1, term=2), ack(1, term=2), rejection(2, hint=1, log_term=1, term=2)):
        leader.step(answer)
        assert sent(leader) == []
    assert progress_of(pr) == (PROBE, 1, 2, True, 0)
