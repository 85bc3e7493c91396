"""Log replication: the new leader's entry, commit rules, commit propagation and log repair."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from multiraft.raft import Entry, HardState, Message, MessageType, ProgressState, StateType
from multiraft.raft.raft import Raft
from raft_harness import Blackhole, Network, new_storage, new_test_raft, next_ents
from raft_steps import beat, elect, entries_with_terms, hup, member_with_log, prop, terms_of

MT = MessageType
FOLLOWER, LEADER = StateType.FOLLOWER, StateType.LEADER


# ------------------------------------------------------ the leader's entry


def test_new_leader_appends_exactly_one_empty_entry_of_its_term() -> None:
    r = member_with_log(1, [1, 1, 2])
    r.step(hup(1))
    r.read_messages()
    r.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=3))
    assert (r.state, r.term) == (LEADER, 3)
    assert r.raft_log.all_entries() == [*entries_with_terms([1, 1, 2]), Entry(3, 4)]
    assert r.raft_log.unstable_entries() == [Entry(3, 4)]
    # The win is announced with appends that start right after the old log.
    msgs = sorted(r.read_messages(), key=lambda m: m.to)
    assert [(m.type, m.to, m.term, m.index, m.log_term, m.entries) for m in msgs] == [
        (MT.APP, 2, 3, 3, 2, (Entry(3, 4),)),
        (MT.APP, 3, 3, 3, 2, (Entry(3, 4),)),
    ]


def test_empty_entry_of_the_new_leader_reaches_and_commits_on_every_member() -> None:
    nt = Network(None, None, None)
    nt.send(hup(1))
    for pid in (1, 2, 3):
        log = nt.raft(pid).raft_log
        assert (log.all_entries(), log.committed) == ([Entry(1, 1)], 1)


# ------------------------------------------------------------ commit rules


def test_proposals_commit_everywhere_through_a_change_of_leader() -> None:
    nt = Network(None, None, None)
    nt.send(hup(1))
    nt.send(prop(1, b"first"))
    nt.send(hup(2))
    nt.send(prop(2, b"second"))
    for pid in (1, 2, 3):
        r = nt.raft(pid)
        assert r.raft_log.committed == 4
        applied = [(e.index, e.term, e.data) for e in next_ents(r, nt.storage[pid])]
        assert applied == [(1, 1, b""), (2, 1, b"first"), (3, 2, b""), (4, 2, b"second")]


def five_with_two_entries_on_a_minority() -> Network:
    """Five members; leader 1 (term 1) put entries 2 and 3 on itself and 2 only."""
    nt = Network(None, None, None, None, None)
    nt.send(hup(1))
    for other in (3, 4, 5):
        nt.cut(1, other)
    nt.send(prop(1, b"a"), prop(1, b"b"))
    assert nt.raft(1).raft_log.committed == 1
    nt.recover()
    return nt


def test_old_term_entries_wait_for_an_entry_of_the_new_term() -> None:
    nt = five_with_two_entries_on_a_minority()
    # 2 wins term 2 but none of its appends arrive, so the term-1 entries it holds
    # stay uncommitted until an entry of term 2 reaches a majority.
    nt.ignore(MT.APP)
    nt.send(hup(2))
    n2 = nt.raft(2)
    assert (n2.state, n2.term, n2.raft_log.committed) == (LEADER, 2, 1)
    nt.recover()
    nt.send(beat(2))
    nt.send(prop(2, b"c"))
    assert n2.raft_log.committed == 5
    assert terms_of(n2) == [1, 1, 1, 2, 2]


def test_empty_entry_of_the_new_leader_commits_the_previous_term_entries() -> None:
    nt = five_with_two_entries_on_a_minority()
    nt.send(hup(2))
    assert nt.raft(2).raft_log.committed == 4
    assert nt.raft(1).raft_log.committed == 4


def figure_8_cluster() -> tuple[Network, list[Raft]]:
    """Five members after figure 8 (b) of the Raft paper.

    1 led term 2 and put index 2 on itself and 2; 5 then won term 3 (votes of 3
    and 4) and put its own index 2 on itself only. Index 1 is committed.
    """

    def member(pid: int, terms: list[int], term: int, vote: int) -> Raft:
        s = new_storage(range(1, 6), entries=entries_with_terms(terms))
        s.set_hard_state(HardState(term=term, vote=vote, commit=1))
        return new_test_raft(pid, storage=s)

    members = [
        member(1, [1, 2], 2, 1),
        member(2, [1, 2], 2, 1),
        member(3, [1], 3, 5),
        member(4, [1], 3, 5),
        member(5, [1, 3], 3, 5),
    ]
    return Network(*members), members


def drop_entries_of_term(term: int) -> Callable[[Message], bool]:
    """A link that loses the entries of ``term`` from every append but delivers the rest."""

    def hook(m: Message) -> bool:
        if m.type == MT.APP:
            m.entries = tuple(e for e in m.entries if e.term != term)
        return True

    return hook


def leader_1_replicates_old_entry_only() -> tuple[Network, list[Raft]]:
    """Figure 8 (c): 1 wins term 4 while 5 is down and copies its index 2 to a majority."""
    nt, members = figure_8_cluster()
    s1 = members[0]
    nt.isolate(5)
    nt.msg_hook = drop_entries_of_term(4)
    nt.send(hup(1))  # term 3: 3 and 4 already voted for 5 in term 3
    nt.send(hup(1))  # term 4: 2, 3 and 4 grant
    assert (s1.state, s1.term) == (LEADER, 4)
    assert terms_of(s1) == [1, 2, 4]
    assert [terms_of(m) for m in members[1:4]] == [[1, 2], [1, 2], [1, 2]]
    assert [s1.trk.progress[pid].match for pid in (2, 3, 4)] == [2, 2, 2]
    return nt, members


def test_figure_8_old_term_entry_on_a_majority_is_not_committed() -> None:
    _, members = leader_1_replicates_old_entry_only()
    assert members[0].raft_log.committed == 1


def test_figure_8_the_uncommitted_old_term_entry_can_still_be_overwritten() -> None:
    nt, members = leader_1_replicates_old_entry_only()
    s5 = members[4]
    # 1 crashes; 5 comes back. Its last term (3) beats the others' (2).
    nt.msg_hook = None
    nt.recover()
    nt.isolate(1)
    nt.send(hup(5))  # term 4: everyone already voted in term 4
    nt.send(hup(5))  # term 5
    assert (s5.state, s5.term) == (LEADER, 5)
    for r in members[1:]:
        assert terms_of(r) == [1, 3, 5]
        assert r.raft_log.committed == 3


def test_figure_8_a_current_term_entry_on_a_majority_commits_the_old_one_too() -> None:
    nt, members = leader_1_replicates_old_entry_only()
    nt.msg_hook = None
    nt.send(beat(1))
    s1 = members[0]
    assert s1.raft_log.committed == 3
    for r in members[1:4]:
        assert terms_of(r) == [1, 2, 4]
        assert r.raft_log.committed == 3


# -------------------------------------------------------- commit propagation


def test_heartbeat_carries_the_commit_index_each_follower_can_hold() -> None:
    s = new_storage([1, 2, 3])
    r = new_test_raft(1, storage=s)
    elect(r)
    for _ in range(10):
        r.append_entry([Entry(0, 0, data=b"x")])
    r.raft_log.commit_to(8)
    r.trk.progress[2].match, r.trk.progress[2].next = 5, 6
    r.trk.progress[3].match, r.trk.progress[3].next = 11, 12
    r.read_messages()
    r.step(beat(1))
    msgs = sorted(r.read_messages(), key=lambda m: m.to)
    assert [(m.type, m.to, m.commit, m.index, m.log_term, m.entries) for m in msgs] == [
        (MT.HEARTBEAT, 2, 5, 0, 0, ()),
        (MT.HEARTBEAT, 3, 8, 0, 0, ()),
    ]


@pytest.mark.parametrize(("leader_commit", "want_commit"), [(3, 3), (1, 2)])
def test_follower_commits_to_the_heartbeat_commit_but_never_backwards(
    leader_commit: int, want_commit: int
) -> None:
    r = new_test_raft(1, storage=new_storage([1, 2], entries=entries_with_terms([1, 2, 3])))
    r.become_follower(2, 2)
    r.raft_log.commit_to(2)
    r.step(Message(type=MT.HEARTBEAT, from_=2, to=1, term=2, commit=leader_commit))
    assert r.raft_log.committed == want_commit
    assert [(m.type, m.to, m.term) for m in r.read_messages()] == [(MT.HEARTBEAT_RESP, 2, 2)]


def test_follower_learns_the_commit_index_from_the_leader_appends() -> None:
    nt = Network(None, None, None)
    nt.send(hup(1))
    nt.send(prop(1, b"a"))
    # The leader committed index 2 when 2 acknowledged it and told everyone.
    assert [nt.raft(pid).raft_log.committed for pid in (1, 2, 3)] == [2, 2, 2]


def test_append_below_the_follower_commit_index_is_answered_with_that_index() -> None:
    r = new_test_raft(1, storage=new_storage([1, 2], entries=entries_with_terms([1, 1, 1])))
    r.become_follower(1, 2)
    r.raft_log.commit_to(3)
    # The probe at index 1 carries a wrong term on purpose: it must not be checked.
    r.step(Message(type=MT.APP, from_=2, to=1, term=1, index=1, log_term=9))
    assert [(m.type, m.index, m.reject) for m in r.read_messages()] == [(MT.APP_RESP, 3, False)]
    assert terms_of(r) == [1, 1, 1]


def test_append_from_a_deposed_leader_is_ignored() -> None:
    nt = Network(None, None, None)
    nt.send(hup(1))
    nt.send(hup(2))
    nt.send(hup(1))  # 1 leads term 3
    nt.send(Message(type=MT.APP, from_=2, to=1, term=2, entries=(Entry(2, 3),)))
    nt.send(prop(1, b"somedata"))
    for pid in (1, 2, 3):
        log = nt.raft(pid).raft_log
        assert [(e.index, e.term, e.data) for e in log.all_entries()] == [
            (1, 1, b""),
            (2, 2, b""),
            (3, 3, b""),
            (4, 3, b"somedata"),
        ]


# ------------------------------------------------------------- log repair


def leader_and_follower(
    leader_terms: list[int], follower_terms: list[int], follower_compact: int = 0
) -> tuple[Raft, Raft]:
    """A leader whose term is its last log term, and a follower that voted for it."""
    last_term = leader_terms[-1]
    s1 = new_storage([1, 2, 3], entries=entries_with_terms(leader_terms))
    s1.set_hard_state(HardState(term=last_term - 1, commit=len(leader_terms)))
    n1 = new_test_raft(1, storage=s1)
    elect(n1)
    n1.read_messages()
    s2 = new_storage([1, 2, 3], entries=entries_with_terms(follower_terms))
    s2.set_hard_state(HardState(term=last_term, vote=1))
    n2 = new_test_raft(2, storage=s2)
    if follower_compact:
        s2.compact(follower_compact)
    return n1, n2


def exchange(frm: Raft, to: Raft) -> list[Message]:
    """Deliver what ``frm`` sent to ``to`` (the rest is lost); return what was delivered."""
    msgs = [m for m in frm.read_messages() if m.to == to.id]
    for m in msgs:
        to.step(m)
    return msgs


FAST_REJECTION_CASES = [
    # leader log, follower log, compact, hint (index, term), next probe (index, term)
    ([1, 2, 2, 4, 4, 4, 4], [1, 2, 2] + [3] * 8, 0, (7, 3), (3, 2)),
    ([1, 2, 2, 3, 4, 4, 4, 5], [1, 2, 2] + [3] * 8, 0, (8, 3), (4, 3)),
    ([1, 1, 1, 1], [1, 2, 2, 4], 0, (1, 1), (1, 1)),
    ([1, 1, 1, 1, 1, 1], [1, 2, 2, 4], 0, (1, 1), (1, 1)),
    ([1, 1, 1, 1], [1, 2, 2, 4, 4, 4], 0, (1, 1), (1, 1)),
    ([1, 1, 1, 4, 5], [1, 1, 1, 4], 0, (4, 4), (4, 4)),
    ([2] + [5] * 8, [2] + [4] * 5, 0, (6, 4), (1, 2)),
    ([2] * 5, [2] + [4] * 7, 0, (1, 2), (1, 2)),
    # A stale probe reaches a follower that compacted past it: no term is known.
    ([1, 1, 3], [1, 1, 3, 3, 3], 5, (3, 0), (2, 1)),
]


@pytest.mark.parametrize(
    ("leader_terms", "follower_terms", "compact", "hint", "next_probe"), FAST_REJECTION_CASES
)
def test_rejection_hint_lets_the_leader_skip_every_mismatching_term(
    leader_terms: list[int],
    follower_terms: list[int],
    compact: int,
    hint: tuple[int, int],
    next_probe: tuple[int, int],
) -> None:
    n1, n2 = leader_and_follower(leader_terms, follower_terms, compact)
    n2.step(Message(type=MT.HEARTBEAT, from_=1, to=2, term=n1.term))
    assert [m.type for m in exchange(n2, n1)] == [MT.HEARTBEAT_RESP]
    (app,) = exchange(n1, n2)
    # The leader probes right after its log as it was before its empty entry.
    assert (app.type, app.index, app.log_term) == (MT.APP, len(leader_terms), leader_terms[-1])
    (resp,) = n2.read_messages()
    assert (resp.type, resp.reject, resp.reject_hint, resp.log_term) == (MT.APP_RESP, True, *hint)
    n1.step(resp)
    (probe,) = n1.read_messages()
    assert (probe.type, probe.index, probe.log_term) == (MT.APP, *next_probe)


@pytest.mark.parametrize(
    ("leader_terms", "follower_terms", "want_appends"),
    [
        # Diverged over many indexes of one term: one rejection, then a match.
        ([1, 2, 2, 4, 4, 4, 4], [1, 2, 2] + [3] * 8, 2),
        ([2] + [5] * 8, [2] + [4] * 5, 2),
        # Far behind with no conflict: the hint points at the follower's end.
        ([1] * 30, [1] * 3, 2),
        # Already matching: the first append is accepted.
        ([1, 1, 2], [1, 1, 2], 1),
    ],
)
def test_leader_finds_the_match_of_a_divergent_follower_in_two_round_trips(
    leader_terms: list[int], follower_terms: list[int], want_appends: int
) -> None:
    n1, n2 = leader_and_follower(leader_terms, follower_terms)
    n1.send_append(2)
    appends = 0
    while True:
        msgs = [m for m in n1.read_messages() if m.to == 2]
        appends += len(msgs)
        assert [m.type for m in msgs] == [MT.APP]
        n2.step(msgs[0])
        (resp,) = n2.read_messages()
        if not resp.reject:
            break
        n1.step(resp)
    assert appends == want_appends
    n1.step(resp)
    exchange(n1, n2)  # the commit index follows
    assert terms_of(n2) == terms_of(n1) == [*leader_terms, leader_terms[-1]]
    assert n1.trk.progress[2].state == ProgressState.REPLICATE


def test_leader_repairs_followers_through_the_network_with_a_down_member() -> None:
    lead = member_with_log(1, [1, 1, 1, 4, 4, 5, 5, 6, 6, 6])
    follower = member_with_log(2, [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3])
    nt = Network(lead, follower, Blackhole())
    nt.send(hup(1))
    nt.send(Message(type=MT.VOTE_RESP, from_=3, to=1, term=7))
    assert (lead.state, lead.term) == (LEADER, 7)
    assert terms_of(follower) == [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7]
    assert follower.raft_log.committed == 11


def test_caught_up_follower_in_probe_is_probed_on_heartbeat_response() -> None:
    # After report_unreachable a fully caught-up follower is in PROBE with nothing
    # left to send; the heartbeat response must still trigger an (empty) append so
    # its answer moves it back to REPLICATE.
    r = new_test_raft(1, peers=[1, 2])
    elect(r)
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=1))
    pr = r.trk.progress[2]
    assert (pr.state, pr.match) == (ProgressState.REPLICATE, 1)
    r.step(Message(type=MT.UNREACHABLE, from_=2, to=1))
    assert pr.state == ProgressState.PROBE
    r.read_messages()
    r.step(Message(type=MT.HEARTBEAT_RESP, from_=2, to=1, term=1))
    assert [(m.type, m.to, m.index, m.entries) for m in r.read_messages()] == [(MT.APP, 2, 1, ())]
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=1))
    assert (pr.state, pr.match, pr.next) == (ProgressState.REPLICATE, 1, 2)
