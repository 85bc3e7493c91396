"""Elections: timeouts, votes, terms, PreVote, CheckQuorum and learners."""

from __future__ import annotations

from typing import Any

import pytest

from multiraft.raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    Config,
    EntryType,
    Message,
    MessageType,
    RawNode,
    StateType,
)
from multiraft.raft.raft import CAMPAIGN_TRANSFER, Raft
from raft_harness import Blackhole, Network, new_storage, new_test_config, new_test_raft
from raft_steps import beat, elect, hup, member_with_log, prop, tick_for

MT = MessageType
FOLLOWER, CANDIDATE, LEADER, PRE_CANDIDATE = (
    StateType.FOLLOWER,
    StateType.CANDIDATE,
    StateType.LEADER,
    StateType.PRE_CANDIDATE,
)


def pre_vote(cfg: Config) -> None:
    cfg.pre_vote = True


def check_quorum(cfg: Config) -> None:
    cfg.check_quorum = True


def pre_vote_and_check_quorum(cfg: Config) -> None:
    cfg.pre_vote = True
    cfg.check_quorum = True


def three_members(**kw: Any) -> tuple[Raft, Raft, Raft]:
    a, b, c = (new_test_raft(i, peers=[1, 2, 3], **kw) for i in (1, 2, 3))
    return a, b, c


def network_at_term_1(**kw: Any) -> tuple[Network, tuple[Raft, Raft, Raft]]:
    """Members 1, 2 and 3, all followers at term 1 with no leader, on one network."""
    members = three_members(**kw)
    for r in members:
        r.become_follower(1, NONE)
    return Network(*members), members


def in_role(role: StateType, term: int = 1, **kw: Any) -> Raft:
    """Member 1 of {1, 2, 3} in ``role``: at ``term``, or ``term + 1`` once it campaigned."""
    r = new_test_raft(1, peers=[1, 2, 3], **kw)
    r.become_follower(term, NONE)
    if role == FOLLOWER:
        r.become_follower(term, 3)
    elif role == PRE_CANDIDATE:
        r.become_pre_candidate()
    elif role == CANDIDATE:
        r.become_candidate()
    else:
        elect(r)
    r.read_messages()
    return r


# ----------------------------------------------------------------- timeouts


@pytest.mark.parametrize("election_tick", [2, 10, 17])
def test_randomized_election_timeout_reaches_every_value_of_its_range_and_nothing_else(
    election_tick: int,
) -> None:
    seen: set[int] = set()
    for seed in range(100):
        r = new_test_raft(1, election=election_tick, seed=seed)
        for _ in range(20):
            r.reset_randomized_election_timeout()
            t = r.randomized_election_timeout
            assert election_tick <= t < 2 * election_tick, f"seed {seed}: timeout {t}"
            seen.add(t)
    assert seen == set(range(election_tick, 2 * election_tick))


@pytest.mark.parametrize("role", [FOLLOWER, CANDIDATE])
def test_non_leader_campaigns_for_the_next_term_exactly_when_its_timeout_elapses(
    role: StateType,
) -> None:
    r = in_role(role)
    term = r.term
    r.randomized_election_timeout = 13
    tick_for(r, 12)
    assert (r.state, r.term, r.read_messages()) == (role, term, [])
    r.tick()
    assert (r.state, r.term, r.vote) == (CANDIDATE, term + 1, 1)
    msgs = r.read_messages()
    assert [(m.type, m.to, m.term, m.index, m.log_term) for m in msgs] == [
        (MT.VOTE, 2, term + 1, r.raft_log.last_index(), r.raft_log.last_term()),
        (MT.VOTE, 3, term + 1, r.raft_log.last_index(), r.raft_log.last_term()),
    ]


def test_pre_vote_follower_times_out_into_pre_candidate_without_changing_term() -> None:
    r = in_role(FOLLOWER, pre_vote=True)
    r.randomized_election_timeout = 10
    tick_for(r, 10)
    assert (r.state, r.term, r.vote, r.lead) == (PRE_CANDIDATE, 1, NONE, NONE)
    assert [(m.type, m.to, m.term) for m in r.read_messages()] == [
        (MT.PRE_VOTE, 2, 2),
        (MT.PRE_VOTE, 3, 2),
    ]


def test_heartbeat_from_leader_resets_the_follower_election_clock() -> None:
    r = in_role(FOLLOWER)
    r.randomized_election_timeout = 10
    tick_for(r, 9)
    r.step(Message(type=MT.HEARTBEAT, from_=3, to=1, term=1))
    tick_for(r, 9)
    assert (r.state, r.term) == (FOLLOWER, 1)
    r.tick()
    assert (r.state, r.term) == (CANDIDATE, 2)


# ------------------------------------------------------------------- voting


@pytest.mark.parametrize("vote_type", [MT.VOTE, MT.PRE_VOTE])
@pytest.mark.parametrize("cand_log_term", [0, 1, 2, 3])
@pytest.mark.parametrize("cand_index", [0, 1, 2, 3])
def test_vote_is_granted_only_to_a_candidate_whose_log_is_at_least_as_up_to_date(
    vote_type: MessageType, cand_log_term: int, cand_index: int
) -> None:
    # The voter's log ends at index 2 with term 2.
    r = member_with_log(1, [2, 2])
    r.step(Message(type=vote_type, from_=2, to=1, term=3, index=cand_index, log_term=cand_log_term))
    (resp,) = r.read_messages()
    up_to_date = cand_log_term > 2 or (cand_log_term == 2 and cand_index >= 2)
    assert resp.type == (MT.VOTE_RESP if vote_type == MT.VOTE else MT.PRE_VOTE_RESP)
    assert resp.to == 2
    assert resp.reject is not up_to_date
    if vote_type == MT.VOTE:
        # A real vote request of a higher term moves the voter to that term either way.
        assert (r.term, resp.term, r.vote) == (3, 3, 2 if up_to_date else NONE)
    else:
        # A pre-vote leaves the voter alone; a grant echoes the asked-for term.
        assert (r.term, r.vote) == (2, NONE)
        assert resp.term == (3 if up_to_date else 2)


def test_one_vote_per_term_and_the_same_candidate_may_ask_again() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    r.step(Message(type=MT.VOTE, from_=2, to=1, term=1))
    r.step(Message(type=MT.VOTE, from_=3, to=1, term=1))
    r.step(Message(type=MT.VOTE, from_=2, to=1, term=1))
    assert [(m.type, m.to, m.term, m.reject) for m in r.read_messages()] == [
        (MT.VOTE_RESP, 2, 1, False),
        (MT.VOTE_RESP, 3, 1, True),
        (MT.VOTE_RESP, 2, 1, False),
    ]
    assert (r.term, r.vote) == (1, 2)


def test_follower_with_a_leader_rejects_a_same_term_vote_even_without_having_voted() -> None:
    r = in_role(FOLLOWER)  # term 1, leader 3, no vote
    r.step(Message(type=MT.VOTE, from_=2, to=1, term=1))
    assert [(m.type, m.term, m.reject) for m in r.read_messages()] == [(MT.VOTE_RESP, 1, True)]
    assert (r.vote, r.lead) == (NONE, 3)


def test_granting_a_vote_resets_the_election_clock() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    r.become_follower(1, NONE)
    r.randomized_election_timeout = 10
    tick_for(r, 9)
    r.step(Message(type=MT.VOTE, from_=2, to=1, term=1))
    tick_for(r, 9)
    assert r.state == FOLLOWER
    r.tick()
    assert (r.state, r.term) == (CANDIDATE, 2)


@pytest.mark.parametrize("role", [FOLLOWER, PRE_CANDIDATE, CANDIDATE, LEADER])
def test_vote_of_a_higher_term_is_granted_from_any_role(role: StateType) -> None:
    r = in_role(role)
    new_term = r.term + 1
    r.step(Message(type=MT.VOTE, from_=2, to=1, term=new_term, log_term=new_term, index=42))
    assert [(m.type, m.term, m.reject) for m in r.read_messages()] == [
        (MT.VOTE_RESP, new_term, False)
    ]
    assert (r.state, r.term, r.vote, r.lead) == (FOLLOWER, new_term, 2, NONE)


@pytest.mark.parametrize("role", [FOLLOWER, PRE_CANDIDATE, CANDIDATE, LEADER])
def test_pre_vote_of_a_higher_term_is_granted_without_changing_anything(role: StateType) -> None:
    r = in_role(role)
    before = (r.state, r.term, r.vote)
    r.step(Message(type=MT.PRE_VOTE, from_=2, to=1, term=r.term + 1, log_term=9, index=42))
    assert [(m.type, m.term, m.reject) for m in r.read_messages()] == [
        (MT.PRE_VOTE_RESP, before[1] + 1, False)
    ]
    assert (r.state, r.term, r.vote) == before


# ------------------------------------------------------------- term changes


@pytest.mark.parametrize("role", [FOLLOWER, PRE_CANDIDATE, CANDIDATE, LEADER])
@pytest.mark.parametrize(
    ("msg_type", "want_lead"),
    [(MT.APP, 2), (MT.HEARTBEAT, 2), (MT.VOTE, NONE), (MT.APP_RESP, NONE)],
)
def test_message_of_a_higher_term_makes_every_role_step_down_to_that_term(
    role: StateType, msg_type: MessageType, want_lead: int
) -> None:
    r = in_role(role)
    last = r.raft_log.last_index()
    r.step(Message(type=msg_type, from_=2, to=1, term=5, log_term=5, index=last))
    assert (r.state, r.term, r.lead) == (FOLLOWER, 5, want_lead)


@pytest.mark.parametrize("role", [FOLLOWER, PRE_CANDIDATE, CANDIDATE, LEADER])
@pytest.mark.parametrize(
    "msg_type", [MT.APP, MT.HEARTBEAT, MT.VOTE, MT.APP_RESP, MT.VOTE_RESP, MT.SNAP]
)
def test_message_of_a_lower_term_is_ignored_by_default(
    role: StateType, msg_type: MessageType
) -> None:
    r = in_role(role, term=3)
    before = (r.state, r.term, r.vote, r.lead, r.raft_log.last_index(), r.raft_log.committed)
    r.step(Message(type=msg_type, from_=2, to=1, term=r.term - 1, index=1, commit=1))
    assert r.read_messages() == []
    after = (r.state, r.term, r.vote, r.lead, r.raft_log.last_index(), r.raft_log.committed)
    assert after == before


@pytest.mark.parametrize("option", ["check_quorum", "pre_vote"])
@pytest.mark.parametrize("msg_type", [MT.APP, MT.HEARTBEAT])
def test_stale_leader_traffic_is_answered_with_our_term_under_check_quorum_or_pre_vote(
    option: str, msg_type: MessageType
) -> None:
    options: dict[str, Any] = {option: True}
    r = new_test_raft(1, peers=[1, 2, 3], **options)
    r.become_follower(3, NONE)
    r.step(Message(type=msg_type, from_=2, to=1, term=2, index=1, commit=1))
    (resp,) = r.read_messages()
    assert (resp.type, resp.to, resp.term, resp.index, resp.reject) == (MT.APP_RESP, 2, 3, 0, False)
    assert (r.state, r.term, r.lead) == (FOLLOWER, 3, NONE)


@pytest.mark.parametrize("options", [{}, {"check_quorum": True, "pre_vote": True}])
def test_stale_vote_request_gets_no_answer(options: dict[str, Any]) -> None:
    r = new_test_raft(1, peers=[1, 2, 3], **options)
    r.become_follower(3, NONE)
    r.step(Message(type=MT.VOTE, from_=2, to=1, term=2, index=5, log_term=2))
    assert r.read_messages() == []


def test_stale_pre_vote_is_rejected_with_our_term() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    r.become_follower(3, NONE)
    r.step(Message(type=MT.PRE_VOTE, from_=2, to=1, term=2, index=5, log_term=2))
    assert [(m.type, m.to, m.term, m.reject) for m in r.read_messages()] == [
        (MT.PRE_VOTE_RESP, 2, 3, True)
    ]
    assert (r.term, r.vote) == (3, NONE)


# ---------------------------------------------------------------- elections


@pytest.mark.parametrize("configure", [None, pre_vote])
@pytest.mark.parametrize(
    ("peers", "want_state"),
    [
        ([None, None, None], LEADER),
        ([None, None, Blackhole()], LEADER),
        ([None, Blackhole(), Blackhole()], "lost"),
        ([None, Blackhole(), Blackhole(), None], "lost"),
        ([None, Blackhole(), Blackhole(), None, None], LEADER),
    ],
)
def test_election_needs_a_majority_of_live_voters(
    configure: object, peers: list[Blackhole | None], want_state: StateType | str
) -> None:
    nt = Network(*peers, config=configure)  # type: ignore[arg-type]
    nt.send(hup(1))
    r = nt.raft(1)
    if want_state == LEADER:
        assert (r.state, r.term) == (LEADER, 1)
    elif configure is None:
        assert (r.state, r.term) == (CANDIDATE, 1)
    else:
        # A pre-election that cannot finish leaves the term alone.
        assert (r.state, r.term) == (PRE_CANDIDATE, 0)


def test_each_member_can_win_in_turn() -> None:
    for configure in (None, pre_vote):
        nt = Network(None, None, None, config=configure)
        for campaigner in (1, 2, 3):
            nt.send(hup(campaigner))
            states = {pid: nt.raft(pid).state for pid in (1, 2, 3)}
            assert states[campaigner] == LEADER
            assert [s for pid, s in states.items() if pid != campaigner] == [FOLLOWER, FOLLOWER]
            assert nt.raft(campaigner).term == campaigner


def test_candidate_with_an_outdated_log_loses_and_is_pushed_to_the_newer_term() -> None:
    # 1 and 2 hold an entry of term 1, 3 one of term 2; 4 and 5 voted for 3 at term 2.
    n1, n2 = member_with_log(1, [1], peers=range(1, 6)), member_with_log(2, [1], peers=range(1, 6))
    n3 = member_with_log(3, [2], peers=range(1, 6))
    voters = []
    for pid in (4, 5):
        v = new_test_raft(pid, peers=range(1, 6))
        v.become_follower(2, NONE)
        v.vote = 3
        voters.append(v)
    nt = Network(n1, n2, n3, *voters)
    nt.send(hup(1))
    assert (n1.state, n1.term) == (FOLLOWER, 2)
    nt.send(hup(1))
    assert (n1.state, n1.term) == (LEADER, 3)
    for pid in range(1, 6):
        assert [(e.index, e.term) for e in nt.raft(pid).raft_log.all_entries()] == [(1, 1), (2, 3)]


@pytest.mark.parametrize("msg_type", [MT.APP, MT.HEARTBEAT])
def test_candidate_concedes_to_a_leader_of_its_own_term(msg_type: MessageType) -> None:
    r = in_role(CANDIDATE)  # term 2
    r.step(Message(type=msg_type, from_=3, to=1, term=2))
    assert (r.state, r.term, r.lead, r.vote) == (FOLLOWER, 2, 3, 1)


def test_isolated_candidate_rejoins_as_follower_with_the_leader_log() -> None:
    nt = Network(None, None, None)
    nt.isolate(1)
    nt.send(hup(1))
    nt.send(hup(3))
    nt.recover()
    nt.send(beat(3))
    nt.send(prop(3, b"force follower"))
    nt.send(beat(3))
    a = nt.raft(1)
    assert (a.state, a.term, a.lead) == (FOLLOWER, 1, 3)
    for pid in (1, 2, 3):
        log = nt.raft(pid).raft_log
        assert [(e.index, e.term, e.data) for e in log.all_entries()] == [
            (1, 1, b""),
            (2, 1, b"force follower"),
        ]
        assert log.committed == 2


@pytest.mark.parametrize(
    ("pre", "loser_after_first_round", "want"),
    [
        # 3 campaigns at term 2 with a shorter log: it loses, but deposes leader 1.
        (False, CANDIDATE, [(FOLLOWER, 2, 1), (FOLLOWER, 2, 1), (FOLLOWER, 2, 0)]),
        # With pre-vote its refused pre-votes leave leader 1 undisturbed.
        (True, FOLLOWER, [(LEADER, 1, 1), (FOLLOWER, 1, 1), (FOLLOWER, 1, 0)]),
    ],
)
def test_dueling_candidates_end_with_the_longer_log_ahead(
    pre: bool, loser_after_first_round: StateType, want: list[tuple[StateType, int, int]]
) -> None:
    a, b, c = three_members(pre_vote=pre)
    nt = Network(a, b, c)
    nt.cut(1, 3)
    nt.send(hup(1))
    nt.send(hup(3))
    assert (a.state, c.state) == (LEADER, loser_after_first_round)
    nt.recover()
    nt.send(hup(3))
    assert [(r.state, r.term, r.raft_log.last_index()) for r in (a, b, c)] == want


def test_single_member_wins_at_once_with_or_without_pre_vote() -> None:
    for configure in (None, pre_vote):
        nt = Network(None, config=configure)
        nt.send(hup(1))
        assert (nt.raft(1).state, nt.raft(1).term) == (LEADER, 1)


def test_candidate_that_loses_the_vote_returns_to_follower_in_its_term() -> None:
    r = in_role(CANDIDATE)  # term 2
    r.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=2, reject=True))
    assert r.state == CANDIDATE
    r.step(Message(type=MT.VOTE_RESP, from_=3, to=1, term=2, reject=True))
    assert (r.state, r.term, r.lead) == (FOLLOWER, 2, NONE)


# ------------------------------------------------------------------ PreVote


def test_granted_pre_votes_start_a_real_election_for_the_next_term() -> None:
    r = in_role(FOLLOWER, pre_vote=True)
    r.step(hup(1))
    assert (r.state, r.term) == (PRE_CANDIDATE, 1)
    r.read_messages()
    r.step(Message(type=MT.PRE_VOTE_RESP, from_=2, to=1, term=2))
    assert (r.state, r.term, r.vote) == (CANDIDATE, 2, 1)
    assert [(m.type, m.to, m.term) for m in r.read_messages()] == [
        (MT.VOTE, 2, 2),
        (MT.VOTE, 3, 2),
    ]


def test_rejected_pre_votes_return_the_pre_candidate_to_follower_in_its_term() -> None:
    r = in_role(FOLLOWER, pre_vote=True)
    r.step(hup(1))
    r.read_messages()
    r.step(Message(type=MT.PRE_VOTE_RESP, from_=2, to=1, term=1, reject=True))
    r.step(Message(type=MT.PRE_VOTE_RESP, from_=3, to=1, term=1, reject=True))
    assert (r.state, r.term, r.vote) == (FOLLOWER, 1, NONE)


def test_pre_candidate_keeps_its_term_while_the_pre_vote_count_is_short() -> None:
    r = new_test_raft(1, peers=range(1, 6), pre_vote=True)
    r.become_follower(1, NONE)
    r.step(hup(1))
    r.read_messages()
    r.step(Message(type=MT.PRE_VOTE_RESP, from_=2, to=1, term=2))
    assert (r.state, r.term, r.vote) == (PRE_CANDIDATE, 1, NONE)
    assert r.read_messages() == []
    r.step(Message(type=MT.PRE_VOTE_RESP, from_=3, to=1, term=2))
    assert (r.state, r.term, r.vote) == (CANDIDATE, 2, 1)


def test_pre_candidate_ignores_real_vote_responses() -> None:
    r = in_role(FOLLOWER, pre_vote=True)
    r.step(hup(1))
    r.read_messages()
    r.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=1))
    r.step(Message(type=MT.VOTE_RESP, from_=3, to=1, term=1))
    assert (r.state, r.term) == (PRE_CANDIDATE, 1)


def test_pre_vote_refusal_from_a_newer_term_moves_the_pre_candidate_to_that_term() -> None:
    r = in_role(FOLLOWER, pre_vote=True)
    r.step(hup(1))
    r.read_messages()
    r.step(Message(type=MT.PRE_VOTE_RESP, from_=2, to=1, term=5, reject=True))
    assert (r.state, r.term, r.vote, r.lead) == (FOLLOWER, 5, NONE, NONE)


def test_isolated_pre_vote_member_keeps_its_term_and_rejoins_without_disruption() -> None:
    a, b, c = three_members(pre_vote=True)
    nt = Network(a, b, c)
    nt.send(hup(1))
    nt.isolate(3)
    nt.send(prop(1, b"x"))
    for _ in range(5):
        nt.send(hup(3))
    assert (c.state, c.term) == (PRE_CANDIDATE, 1)
    nt.recover()
    # Its log is behind: the pre-votes are refused and nobody changes term.
    nt.send(hup(3))
    assert [(r.state, r.term) for r in (a, b, c)] == [(LEADER, 1), (FOLLOWER, 1), (FOLLOWER, 1)]
    nt.send(beat(1))
    assert (c.lead, c.raft_log.committed) == (1, 2)


def test_split_pre_vote_recovers_in_the_next_round() -> None:
    nt, (a, b, c) = network_at_term_1(pre_vote=True)
    nt.send(hup(1))
    assert (a.state, a.term) == (LEADER, 2)
    nt.isolate(1)
    nt.send(hup(2), hup(3))
    # Each grants the other's pre-vote (both forgot the leader by campaigning), then
    # each votes for itself: the real election at term 3 is split.
    assert [(r.state, r.term) for r in (b, c)] == [(CANDIDATE, 3), (CANDIDATE, 3)]
    nt.send(hup(2))
    assert [(r.state, r.term) for r in (b, c)] == [(LEADER, 4), (FOLLOWER, 4)]


def test_pre_vote_with_check_quorum_elects_once_followers_have_campaigned() -> None:
    nt, (a, b, c) = network_at_term_1(pre_vote=True, check_quorum=True)
    nt.send(hup(1))
    nt.isolate(1)
    assert [r.state for r in (a, b, c)] == [LEADER, FOLLOWER, FOLLOWER]
    # 2 still believes in leader 1 (lease) and drops 3's pre-vote; but 3 forgot
    # the leader by campaigning, so it grants 2's pre-vote and vote.
    nt.send(hup(3))
    assert (b.state, c.state, c.term) == (FOLLOWER, PRE_CANDIDATE, 2)
    nt.send(hup(2))
    assert [(r.state, r.term) for r in (b, c)] == [(LEADER, 3), (FOLLOWER, 3)]


def test_pre_vote_member_behind_on_term_can_still_complete_an_election() -> None:
    nt, (a, b, c) = network_at_term_1(pre_vote=True)
    nt.cut(1, 3)
    nt.cut(2, 3)
    nt.send(hup(1))
    nt.send(hup(3))
    nt.send(hup(2))
    assert [(r.state, r.term) for r in (a, b, c)] == [
        (FOLLOWER, 3),
        (LEADER, 3),
        (PRE_CANDIDATE, 1),
    ]
    # 2 crashes; 3 comes back with a stale term and 1 must still be electable.
    nt.recover()
    nt.cut(2, 1)
    nt.cut(2, 3)
    nt.send(hup(3))
    nt.send(hup(1))
    assert (a.state, a.term) == (LEADER, 4)
    assert (c.state, c.term, c.lead) == (FOLLOWER, 4, 1)


def test_disruptive_follower_without_pre_vote_deposes_the_leader_through_a_stale_heartbeat() -> (
    None
):
    nt, (n1, n2, n3) = network_at_term_1(check_quorum=True)
    nt.send(hup(1))
    assert [(r.state, r.term) for r in (n1, n2, n3)] == [
        (LEADER, 2),
        (FOLLOWER, 2),
        (FOLLOWER, 2),
    ]
    n3.randomized_election_timeout = n3.election_timeout + 2
    tick_for(n3, n3.randomized_election_timeout)
    assert (n3.state, n3.term) == (CANDIDATE, 3)
    n3.read_messages()  # the vote requests are delayed forever
    # The leader's heartbeat reaches 3 late; 3's answer carries term 3.
    nt.send(Message(type=MT.HEARTBEAT, from_=1, to=3, term=2))
    assert [(r.state, r.term) for r in (n1, n2, n3)] == [
        (FOLLOWER, 3),
        (FOLLOWER, 2),
        (CANDIDATE, 3),
    ]


def test_disruptive_follower_with_pre_vote_does_not_depose_the_leader() -> None:
    nt, (n1, n2, n3) = network_at_term_1(check_quorum=True)
    nt.send(hup(1))
    nt.isolate(3)
    for _ in range(3):
        nt.send(prop(1, b"somedata"))
    for r in (n1, n2, n3):
        r.pre_vote = True
    nt.recover()
    nt.send(hup(3))
    assert [(r.state, r.term) for r in (n1, n2, n3)] == [
        (LEADER, 2),
        (FOLLOWER, 2),
        (PRE_CANDIDATE, 2),
    ]
    nt.send(Message(type=MT.HEARTBEAT, from_=1, to=3, term=2))
    assert n1.state == LEADER


# -------------------------------------------------------------- CheckQuorum


def test_leader_without_a_live_quorum_steps_down_after_an_election_timeout() -> None:
    r = new_test_raft(1, election=5, peers=[1, 2, 3], check_quorum=True)
    elect(r)
    tick_for(r, 4)
    assert r.state == LEADER
    r.tick()
    assert (r.state, r.term, r.lead) == (FOLLOWER, 1, NONE)


def test_leader_hearing_from_a_quorum_keeps_leading() -> None:
    r = new_test_raft(1, election=5, peers=[1, 2, 3], check_quorum=True)
    elect(r)
    for _ in range(3 * r.election_timeout):
        r.step(Message(type=MT.HEARTBEAT_RESP, from_=2, to=1, term=r.term))
        r.tick()
    assert (r.state, r.term) == (LEADER, 1)


def test_leader_without_check_quorum_never_steps_down_on_its_own() -> None:
    r = new_test_raft(1, election=5, peers=[1, 2, 3])
    elect(r)
    tick_for(r, 50)
    assert (r.state, r.term) == (LEADER, 1)


def test_follower_in_lease_ignores_a_higher_term_vote_until_its_lease_expires() -> None:
    a, b, c = three_members(check_quorum=True)
    nt = Network(a, b, c)
    b.randomized_election_timeout = b.election_timeout + 1
    tick_for(b, b.election_timeout)
    nt.send(hup(1))
    assert (a.state, c.state) == (LEADER, FOLLOWER)
    nt.send(hup(3))
    # 2 heard from leader 1 within the election timeout and ignored 3's request.
    assert (c.state, c.term, b.term, b.vote) == (CANDIDATE, 2, 1, 1)
    tick_for(b, b.election_timeout)
    nt.send(hup(3))
    assert (c.state, c.term) == (LEADER, 3)


@pytest.mark.parametrize("vote_type", [MT.VOTE, MT.PRE_VOTE])
def test_follower_in_lease_drops_a_higher_term_vote_silently(vote_type: MessageType) -> None:
    r = new_test_raft(1, peers=[1, 2, 3], check_quorum=True)
    r.become_follower(2, 3)
    r.step(Message(type=vote_type, from_=2, to=1, term=3, index=10, log_term=3))
    assert r.read_messages() == []
    assert (r.term, r.vote, r.lead) == (2, NONE, 3)


def test_follower_in_lease_grants_a_transfer_campaign_vote() -> None:
    r = new_test_raft(1, peers=[1, 2, 3], check_quorum=True)
    r.become_follower(2, 3)
    r.step(
        Message(
            type=MT.VOTE, from_=2, to=1, term=3, index=10, log_term=3, context=CAMPAIGN_TRANSFER
        )
    )
    assert [(m.type, m.term, m.reject) for m in r.read_messages()] == [(MT.VOTE_RESP, 3, False)]
    assert (r.term, r.vote, r.lead) == (3, 2, NONE)


def test_elections_with_check_quorum_wait_for_the_leases_to_expire() -> None:
    a, b, c = three_members(check_quorum=True)
    nt = Network(a, b, c)
    a.randomized_election_timeout = a.election_timeout + 1
    b.randomized_election_timeout = b.election_timeout + 2
    nt.send(hup(1))
    assert (a.state, c.state) == (LEADER, FOLLOWER)
    a.randomized_election_timeout = a.election_timeout + 1
    b.randomized_election_timeout = b.election_timeout + 2
    tick_for(a, a.election_timeout)
    tick_for(b, b.election_timeout)
    nt.send(hup(3))
    assert (a.state, c.state, c.term) == (FOLLOWER, LEADER, 2)


def test_stuck_candidate_is_freed_by_answering_the_leader_with_its_higher_term() -> None:
    a, b, c = three_members(check_quorum=True)
    nt = Network(a, b, c)
    b.randomized_election_timeout = b.election_timeout + 1
    tick_for(b, b.election_timeout)
    nt.send(hup(1))
    nt.isolate(1)
    nt.send(hup(3))
    assert (b.state, c.state, c.term) == (FOLLOWER, CANDIDATE, b.term + 1)
    nt.send(hup(3))
    assert (b.state, c.state, c.term) == (FOLLOWER, CANDIDATE, b.term + 2)
    nt.recover()
    nt.send(Message(type=MT.HEARTBEAT, from_=1, to=3, term=a.term))
    # 3 answers the stale heartbeat with its own term; the leader steps down to it.
    assert (a.state, a.term) == (FOLLOWER, c.term)
    nt.send(hup(3))
    assert (c.state, c.term) == (LEADER, 4)


def test_added_member_counts_as_active_for_the_next_quorum_check() -> None:
    r = new_test_raft(1, peers=[1], check_quorum=True)
    elect(r)
    tick_for(r, r.election_timeout - 1)
    r.apply_conf_change(ConfChange(ConfChangeType.ADD_NODE, 2).as_v2())
    r.tick()
    assert r.state == LEADER
    tick_for(r, r.election_timeout)
    assert (r.state, r.term) == (FOLLOWER, 1)


def test_non_promotable_voter_follows_the_leader_with_check_quorum() -> None:
    a = new_test_raft(1, peers=[1, 2], check_quorum=True)
    b = new_test_raft(2, peers=[1], check_quorum=True)  # not a member of its own config
    nt = Network(a, b)
    assert not b.promotable()
    tick_for(b, 2 * b.election_timeout)
    assert (b.state, b.term, b.read_messages()) == (FOLLOWER, 0, [])
    nt.send(hup(1))
    assert (a.state, b.state, b.lead) == (LEADER, FOLLOWER, 1)


# ----------------------------------------------------------------- learners


def test_learner_never_campaigns_on_timeout_hup_or_timeout_now() -> None:
    r = new_test_raft(2, storage=new_storage([1], learners=[2]))
    r.become_follower(1, NONE)
    tick_for(r, 5 * r.election_timeout)
    r.step(hup(2))
    r.step(Message(type=MT.TIMEOUT_NOW, from_=1, to=2, term=1))
    assert (r.state, r.term, r.vote, r.read_messages()) == (FOLLOWER, 1, NONE, [])


def test_learner_grants_a_vote_it_is_asked_for() -> None:
    r = new_test_raft(2, storage=new_storage([1], learners=[2]))
    r.become_follower(1, NONE)
    r.step(Message(type=MT.VOTE, from_=1, to=2, term=2, log_term=11, index=11))
    assert [(m.type, m.reject) for m in r.read_messages()] == [(MT.VOTE_RESP, False)]


def test_promoted_learner_can_campaign_and_win() -> None:
    n1 = new_test_raft(1, storage=new_storage([1], learners=[2]))
    n2 = new_test_raft(2, storage=new_storage([1], learners=[2]))
    nt = Network(n1, n2)
    nt.send(hup(1))
    nt.send(beat(1))
    cc = ConfChange(ConfChangeType.ADD_NODE, 2).as_v2()
    n1.apply_conf_change(cc)
    n2.apply_conf_change(cc)
    assert not n2.is_learner
    n2.randomized_election_timeout = n2.election_timeout
    tick_for(n2, n2.election_timeout)
    nt.send(*n2.read_messages())
    assert (n1.state, n2.state, n2.term) == (FOLLOWER, LEADER, 2)


# ---------------------------------------------------------- campaign calls


def drain(rn: RawNode) -> None:
    while rn.has_ready():
        rn.advance(rn.ready())


@pytest.mark.parametrize("pre", [False, True])
def test_rawnode_campaign_on_a_leader_changes_nothing_and_sends_nothing(pre: bool) -> None:
    rn = RawNode(new_test_config(1, 10, 1, new_storage([1, 2, 3]), pre_vote=pre))
    rn.campaign()
    if pre:
        rn.step(Message(type=MT.PRE_VOTE_RESP, from_=2, to=1, term=1))
    rn.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=1))
    assert (rn.raft.state, rn.raft.term) == (LEADER, 1)
    drain(rn)
    last = rn.raft.raft_log.last_index()
    rn.campaign()
    assert not rn.has_ready()
    rd = rn.ready()
    assert (rd.messages, rd.entries, rd.hard_state, rd.soft_state) == ([], [], None, None)
    assert (rn.raft.state, rn.raft.term, rn.raft.raft_log.last_index()) == (LEADER, 1, last)


def test_single_member_rawnode_campaign_twice_keeps_the_first_term() -> None:
    rn = RawNode(new_test_config(1, 10, 1, new_storage([1])))
    rn.campaign()
    assert (rn.raft.state, rn.raft.term) == (LEADER, 1)
    drain(rn)
    rn.campaign()
    assert (rn.raft.state, rn.raft.term, rn.has_ready()) == (LEADER, 1, False)


def test_becoming_candidate_or_pre_candidate_from_leader_is_a_bug() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    elect(r)
    with pytest.raises(AssertionError):
        r.become_candidate()
    with pytest.raises(AssertionError):
        r.become_pre_candidate()
    assert (r.state, r.term) == (LEADER, 1)


def test_becoming_leader_straight_from_follower_is_a_bug() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    with pytest.raises(AssertionError):
        r.become_leader()


def test_campaigning_again_as_candidate_starts_a_newer_term() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    r.step(hup(1))
    assert (r.state, r.term) == (CANDIDATE, 1)
    r.read_messages()
    r.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=1, reject=True))
    r.step(hup(1))
    assert (r.state, r.term, r.vote) == (CANDIDATE, 2, 1)
    assert [(m.type, m.to, m.term) for m in r.read_messages()] == [
        (MT.VOTE, 2, 2),
        (MT.VOTE, 3, 2),
    ]
    # The rejection of the previous term no longer counts: one grant wins.
    r.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=2))
    assert (r.state, r.term) == (LEADER, 2)


def test_member_with_committed_but_unapplied_conf_change_does_not_campaign() -> None:
    nt = Network(None, None, None)
    nt.send(hup(1))
    cc = ConfChange(ConfChangeType.REMOVE_NODE, 3)
    n2 = nt.raft(2)
    nt.send(prop(1, cc.to_bytes(), etype=EntryType.CONF_CHANGE))
    assert n2.raft_log.committed == 2 and n2.raft_log.applied == 0
    tick_for(n2, n2.randomized_election_timeout)
    assert (n2.state, n2.term) == (FOLLOWER, 1)
