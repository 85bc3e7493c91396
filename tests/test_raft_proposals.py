"""Proposals: forwarding to the leader, refusals, and the uncommitted-size budget."""

from __future__ import annotations

import pytest

from multiraft.raft import (
    NONE,
    Entry,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    StateType,
)
from multiraft.raft.raft import Raft
from raft_harness import Blackhole, Network, new_storage, new_test_config, new_test_raft
from raft_steps import elect, hup, prop, transfer

MT = MessageType
LEADER = StateType.LEADER


# --------------------------------------------------------------- forwarding


def test_follower_forwards_a_proposal_to_its_leader_without_a_term() -> None:
    r = new_test_raft(2, peers=[1, 2, 3])
    r.become_follower(4, 1)
    r.step(prop(2, b"somedata"))
    assert [(m.type, m.from_, m.to, m.term, m.entries) for m in r.read_messages()] == [
        (MT.PROP, 2, 1, 0, (Entry(0, 0, data=b"somedata"),))
    ]
    assert r.raft_log.last_index() == 0


@pytest.mark.parametrize("third", [None, Blackhole()])
def test_proposal_made_at_a_follower_is_committed_by_the_leader(third: Blackhole | None) -> None:
    nt = Network(None, None, third)
    nt.send(hup(1))
    nt.send(prop(2, b"somedata"))
    for pid in (1, 2):
        log = nt.raft(pid).raft_log
        assert [(e.index, e.term, e.data) for e in log.all_entries()] == [
            (1, 1, b""),
            (2, 1, b"somedata"),
        ]
        assert log.committed == 2
    assert nt.raft(1).term == 1


@pytest.mark.parametrize(
    ("peers", "accepted"),
    [
        ([None, None, None], True),
        ([None, None, Blackhole()], True),
        ([None, Blackhole(), Blackhole()], False),
        ([None, Blackhole(), Blackhole(), None], False),
        ([None, Blackhole(), Blackhole(), None, None], True),
    ],
)
def test_proposal_is_accepted_only_once_a_leader_is_elected(
    peers: list[Blackhole | None], accepted: bool
) -> None:
    nt = Network(*peers)
    nt.send(hup(1))
    r = nt.raft(1)
    if accepted:
        nt.send(prop(1, b"somedata"))
        assert [(e.index, e.term, e.data) for e in r.raft_log.all_entries()] == [
            (1, 1, b""),
            (2, 1, b"somedata"),
        ]
        assert r.raft_log.committed == 2
    else:
        with pytest.raises(ProposalDroppedError):
            nt.send(prop(1, b"somedata"))
        assert r.raft_log.all_entries() == []
    assert r.term == 1


# ------------------------------------------------------------------ refusals


def test_follower_without_a_leader_drops_a_proposal() -> None:
    r = new_test_raft(2, peers=[1, 2, 3])
    r.become_follower(1, NONE)
    with pytest.raises(ProposalDroppedError):
        r.step(prop(2, b"x"))
    assert r.read_messages() == []


@pytest.mark.parametrize("pre_vote", [False, True])
def test_campaigning_member_drops_a_proposal(pre_vote: bool) -> None:
    r = new_test_raft(1, peers=[1, 2, 3], pre_vote=pre_vote)
    r.step(hup(1))
    r.read_messages()
    with pytest.raises(ProposalDroppedError):
        r.step(prop(1, b"x"))
    assert (r.raft_log.last_index(), r.read_messages()) == (0, [])


def test_follower_with_forwarding_disabled_drops_a_proposal_but_its_leader_accepts() -> None:
    nt = Network(None, None, None, config=lambda c: setattr(c, "disable_proposal_forwarding", True))
    nt.send(hup(1))
    with pytest.raises(ProposalDroppedError):
        nt.send(prop(2, b"x"))
    nt.send(prop(1, b"y"))
    assert [e.data for e in nt.raft(2).raft_log.all_entries()] == [b"", b"y"]


def test_rawnode_propose_raises_while_a_transfer_is_pending() -> None:
    rn = RawNode(new_test_config(1, 10, 1, new_storage([1, 2])))
    elect(rn.raft)
    rn.raft.step(transfer(2, 1))
    assert rn.raft.lead_transferee == 2
    with pytest.raises(ProposalDroppedError):
        rn.propose(b"x")
    assert rn.raft.raft_log.last_index() == 1


def test_rawnode_propose_raises_without_a_leader() -> None:
    rn = RawNode(new_test_config(1, 10, 1, new_storage([1, 2, 3])))
    with pytest.raises(ProposalDroppedError):
        rn.propose(b"x")
    assert not rn.has_ready()


# ------------------------------------------------- uncommitted size budget

DATA = b"testdata"


def limited_leader(entries: int) -> Raft:
    """Leader of {1, 2, 3} whose budget holds exactly ``entries`` proposals of DATA."""
    r = new_test_raft(1, peers=[1, 2, 3], max_uncommitted_entries_size=entries * len(DATA))
    elect(r)
    return r


def test_empty_entry_of_a_new_leader_uses_no_budget() -> None:
    r = limited_leader(4)
    assert r.uncommitted_size == 0


def test_proposals_beyond_the_uncommitted_budget_are_dropped() -> None:
    r = limited_leader(4)
    for _ in range(4):
        r.step(prop(1, DATA))
    assert r.uncommitted_size == 4 * len(DATA)
    last = r.raft_log.last_index()
    with pytest.raises(ProposalDroppedError):
        r.step(prop(1, DATA))
    assert r.raft_log.last_index() == last == 5
    # Entries without data are always accepted.
    r.step(prop(1, b""))
    assert r.raft_log.last_index() == 6


def test_first_proposal_is_accepted_even_when_larger_than_the_whole_budget() -> None:
    r = limited_leader(4)
    big = Message(
        type=MT.PROP, from_=1, to=1, entries=tuple(Entry(0, 0, data=DATA) for _ in range(8))
    )
    r.step(big)
    assert r.uncommitted_size == 8 * len(DATA)
    with pytest.raises(ProposalDroppedError):
        r.step(prop(1, DATA))


def test_budget_is_released_as_entries_commit_through_rawnode() -> None:
    s = new_storage([1, 2])
    rn = RawNode(new_test_config(1, 10, 1, s, max_uncommitted_entries_size=2 * len(DATA)))
    rn.campaign()
    rn.step(Message(type=MT.VOTE_RESP, from_=2, to=1, term=1))
    assert rn.raft.state == LEADER
    rn.propose(DATA)
    rn.propose(DATA)
    with pytest.raises(ProposalDroppedError):
        rn.propose(DATA)
    rd = rn.ready()
    s.append(rd.entries)
    rn.advance(rd)
    rn.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=3))
    rd = rn.ready()
    assert [e.data for e in rd.committed_entries] == [b"", DATA, DATA]
    assert rn.raft.uncommitted_size == 2 * len(DATA)
    rn.advance(rd)
    assert rn.raft.uncommitted_size == 0
    rn.propose(DATA)
    rn.propose(DATA)
    assert rn.raft.raft_log.last_index() == 5


def test_stepping_down_forgets_the_uncommitted_budget() -> None:
    r = limited_leader(4)
    r.step(prop(1, DATA))
    r.become_follower(2, 2)
    assert r.uncommitted_size == 0
