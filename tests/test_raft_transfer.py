"""Leadership transfer: TIMEOUT_NOW, catching the transferee up, aborts and replacements."""

from __future__ import annotations

from typing import Any

import pytest

from multiraft.raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    Config,
    Message,
    MessageType,
    ProposalDroppedError,
    StateType,
)
from multiraft.raft.raft import CAMPAIGN_TRANSFER, Raft
from raft_harness import Network, new_storage, new_test_raft
from raft_steps import elect, hup, prop, tick_for, transfer

MT = MessageType
FOLLOWER, CANDIDATE, LEADER = StateType.FOLLOWER, StateType.CANDIDATE, StateType.LEADER


def assert_transfer_over(r: Raft, state: StateType, lead: int) -> None:
    assert (r.state, r.lead, r.lead_transferee) == (state, lead, NONE)


def elected_network(configure: object = None) -> tuple[Network, Raft]:
    nt = Network(None, None, None, config=configure)  # type: ignore[arg-type]
    nt.send(hup(1))
    lead = nt.raft(1)
    assert (lead.state, lead.term) == (LEADER, 1)
    return nt, lead


def check_quorum(cfg: Config) -> None:
    cfg.check_quorum = True


def pre_vote(cfg: Config) -> None:
    cfg.pre_vote = True


# ------------------------------------------------------------------ success


def test_up_to_date_follower_gets_timeout_now_at_once() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    elect(r)
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=1))
    r.read_messages()
    r.step(transfer(2, 1))
    assert [(m.type, m.to, m.term) for m in r.read_messages()] == [(MT.TIMEOUT_NOW, 2, 1)]
    assert (r.state, r.lead_transferee) == (LEADER, 2)


@pytest.mark.parametrize("options", [{}, {"pre_vote": True}, {"check_quorum": True}])
def test_timeout_now_makes_the_follower_campaign_at_once_for_the_next_term(
    options: dict[str, Any],
) -> None:
    r = new_test_raft(2, peers=[1, 2, 3], **options)
    r.become_follower(1, 1)
    r.step(Message(type=MT.TIMEOUT_NOW, from_=1, to=2, term=1))
    # No pre-vote, and the vote requests say the leader asked for this election.
    assert (r.state, r.term, r.vote) == (CANDIDATE, 2, 2)
    assert [(m.type, m.to, m.term, m.context) for m in r.read_messages()] == [
        (MT.VOTE, 1, 2, CAMPAIGN_TRANSFER),
        (MT.VOTE, 3, 2, CAMPAIGN_TRANSFER),
    ]


@pytest.mark.parametrize("configure", [None, pre_vote, check_quorum])
def test_transfer_to_an_up_to_date_follower_and_back(configure: object) -> None:
    nt, lead = elected_network(configure)
    nt.send(transfer(2, 1))
    assert_transfer_over(lead, FOLLOWER, 2)
    assert (nt.raft(2).state, nt.raft(2).term) == (LEADER, 2)
    nt.send(prop(2))
    nt.send(transfer(1, 2))
    assert_transfer_over(lead, LEADER, 1)
    assert lead.term == 3


def test_transfer_requested_at_a_follower_is_forwarded_to_the_leader() -> None:
    f = new_test_raft(2, peers=[1, 2, 3])
    f.become_follower(1, 1)
    f.step(transfer(2, 2))
    assert [(m.type, m.from_, m.to, m.term) for m in f.read_messages()] == [
        (MT.TRANSFER_LEADER, 2, 1, 1)
    ]
    nt, lead = elected_network()
    nt.send(transfer(2, 2))
    assert_transfer_over(lead, FOLLOWER, 2)
    nt.send(prop(1))
    nt.send(transfer(1, 1))
    assert_transfer_over(lead, LEADER, 1)


def test_lagging_transferee_is_caught_up_before_it_gets_timeout_now() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    elect(r)
    r.step(prop(1, b"x"))
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=2))
    r.step(Message(type=MT.APP_RESP, from_=3, to=1, term=1, index=1))
    # The append of entry 2 to 3 was lost.
    r.step(Message(type=MT.UNREACHABLE, from_=3, to=1))
    r.read_messages()
    assert (r.trk.progress[3].match, r.trk.progress[3].next) == (1, 2)
    r.step(transfer(3, 1))
    msgs = r.read_messages()
    assert [(m.type, m.to, m.index, [e.index for e in m.entries]) for m in msgs] == [
        (MT.APP, 3, 1, [2])
    ]
    assert r.lead_transferee == 3
    r.step(Message(type=MT.APP_RESP, from_=3, to=1, term=1, index=2))
    assert [(m.type, m.to) for m in r.read_messages() if m.type == MT.TIMEOUT_NOW] == [
        (MT.TIMEOUT_NOW, 3)
    ]


def test_transfer_to_a_follower_that_missed_entries_completes_through_the_network() -> None:
    nt, lead = elected_network()
    nt.isolate(3)
    nt.send(prop(1))
    nt.recover()
    assert lead.trk.progress[3].match == 1
    nt.send(transfer(3, 1))
    assert_transfer_over(lead, FOLLOWER, 3)
    n3 = nt.raft(3)
    assert (n3.state, n3.term, n3.raft_log.last_index()) == (LEADER, 2, 3)


def test_transfer_campaign_is_not_stopped_by_the_check_quorum_lease() -> None:
    nt = Network(None, None, None, config=check_quorum)
    for pid in (1, 2, 3):
        r = nt.raft(pid)
        r.randomized_election_timeout = r.election_timeout + pid
    tick_for(nt.raft(2), nt.raft(2).election_timeout)
    nt.send(hup(1))
    lead = nt.raft(1)
    assert lead.state == LEADER
    nt.send(transfer(2, 1))
    assert_transfer_over(lead, FOLLOWER, 2)
    nt.send(prop(1))
    nt.send(transfer(1, 2))
    assert_transfer_over(lead, LEADER, 1)


# ---------------------------------------------------------------- no-ops


@pytest.mark.parametrize(("transferee", "why"), [(1, "self"), (4, "not a member")])
def test_transfer_to_self_or_to_a_non_member_changes_nothing(transferee: int, why: str) -> None:
    nt, lead = elected_network()
    nt.send(transfer(transferee, 1))
    assert_transfer_over(lead, LEADER, 1)
    assert lead.term == 1, why


def test_transfer_to_a_learner_is_ignored() -> None:
    r = new_test_raft(1, storage=new_storage([1, 2], learners=[3]))
    elect(r)
    r.step(Message(type=MT.APP_RESP, from_=3, to=1, term=1, index=1))
    r.read_messages()
    r.step(transfer(3, 1))
    assert (r.lead_transferee, r.read_messages()) == (NONE, [])
    r.step(prop(1, b"still accepted"))
    assert r.raft_log.last_index() == 2


def test_timeout_now_at_a_non_member_does_not_make_it_leader() -> None:
    r = new_test_raft(1, peers=[2, 3, 4])
    r.step(Message(type=MT.TIMEOUT_NOW, from_=2, to=1, term=0))
    r.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=0))
    r.step(Message(type=MT.VOTE_RESP, from_=3, to=1, term=0))
    assert (r.state, r.term) == (FOLLOWER, 0)


# ----------------------------------------------------- pending transfers


def test_proposals_are_dropped_while_a_transfer_is_pending() -> None:
    nt, lead = elected_network()
    nt.isolate(3)
    nt.send(transfer(3, 1))
    assert lead.lead_transferee == 3
    last = lead.raft_log.last_index()
    with pytest.raises(ProposalDroppedError):
        lead.step(prop(1, b"dropped"))
    assert lead.raft_log.last_index() == last


def test_transfer_is_abandoned_after_an_election_timeout_and_proposals_resume() -> None:
    nt, lead = elected_network()
    nt.isolate(3)
    nt.send(transfer(3, 1))
    tick_for(lead, lead.heartbeat_timeout)
    assert lead.lead_transferee == 3
    tick_for(lead, lead.election_timeout - lead.heartbeat_timeout - 1)
    assert lead.lead_transferee == 3
    lead.tick()
    assert_transfer_over(lead, LEADER, 1)
    nt.send(prop(1, b"accepted"))
    assert (lead.raft_log.last_index(), lead.raft_log.committed) == (2, 2)


def test_repeating_the_same_transfer_does_not_extend_its_deadline() -> None:
    nt, lead = elected_network()
    nt.isolate(3)
    nt.send(transfer(3, 1))
    tick_for(lead, lead.heartbeat_timeout)
    nt.send(transfer(3, 1))
    tick_for(lead, lead.election_timeout - lead.heartbeat_timeout)
    assert_transfer_over(lead, LEADER, 1)


def test_a_transfer_to_another_member_replaces_the_pending_one() -> None:
    nt, lead = elected_network()
    nt.isolate(3)
    nt.send(transfer(3, 1))
    assert lead.lead_transferee == 3
    nt.send(transfer(2, 1))
    assert_transfer_over(lead, FOLLOWER, 2)
    assert nt.raft(2).state == LEADER


def test_transfer_back_to_the_leader_cancels_the_pending_one() -> None:
    nt, lead = elected_network()
    nt.isolate(3)
    nt.send(transfer(3, 1))
    nt.send(transfer(1, 1))
    assert_transfer_over(lead, LEADER, 1)
    nt.send(prop(1))
    assert lead.raft_log.committed == 2


def test_higher_term_vote_during_a_transfer_deposes_the_leader() -> None:
    nt, lead = elected_network()
    nt.isolate(3)
    nt.send(transfer(3, 1))
    nt.send(hup(2))
    assert_transfer_over(lead, FOLLOWER, 2)
    assert lead.term == 2


def test_removing_the_transferee_aborts_the_transfer() -> None:
    nt, lead = elected_network()
    nt.ignore(MT.TIMEOUT_NOW)
    nt.send(transfer(3, 1))
    assert lead.lead_transferee == 3
    lead.apply_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3).as_v2())
    assert_transfer_over(lead, LEADER, 1)
