"""ReadIndex: linearizable reads confirmed by a heartbeat quorum (SAFE) or by the lease."""

from __future__ import annotations

from typing import Any

import pytest

from multiraft.raft import (
    NONE,
    Config,
    Entry,
    HardState,
    Message,
    MessageType,
    ReadOnlyOption,
    ReadState,
    StateType,
)
from multiraft.raft.raft import Raft
from raft_harness import Network, new_storage, new_test_raft
from raft_steps import beat, elect, entries_with_terms, hup, prop, read_index

MT = MessageType
LEADER = StateType.LEADER


def lease_based(cfg: Config) -> None:
    cfg.check_quorum = True
    cfg.read_only_option = ReadOnlyOption.LEASE_BASED


def leader_of_three(**kw: Any) -> Raft:
    """Leader 1 of {1, 2, 3} at term 1 with its empty entry (index 1) committed."""
    r = new_test_raft(1, peers=[1, 2, 3], **kw)
    elect(r)
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=1))
    assert r.raft_log.committed == 1
    r.read_messages()
    return r


def heartbeat_ack(frm: int, ctx: bytes) -> Message:
    return Message(type=MT.HEARTBEAT_RESP, from_=frm, to=1, term=1, context=ctx)


# --------------------------------------------------------------------- SAFE


def test_safe_read_sends_a_heartbeat_round_carrying_the_request_context() -> None:
    r = leader_of_three()
    r.step(read_index(1, b"ctx"))
    msgs = sorted(r.read_messages(), key=lambda m: m.to)
    assert [(m.type, m.to, m.term, m.context, m.commit) for m in msgs] == [
        (MT.HEARTBEAT, 2, 1, b"ctx", 1),
        (MT.HEARTBEAT, 3, 1, b"ctx", 0),
    ]
    assert not r.read_states


def test_safe_read_is_answered_with_the_commit_index_of_the_request_time_once_a_quorum_acks() -> (
    None
):
    r = leader_of_three()
    r.step(read_index(1, b"ctx"))
    r.read_messages()
    # Commit moves on before the acknowledgement arrives.
    r.step(prop(1, b"later"))
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=2))
    assert r.raft_log.committed == 2
    r.step(heartbeat_ack(2, b"ctx"))
    assert r.read_states == [ReadState(index=1, request_ctx=b"ctx")]
    assert (r.read_only.pending, r.read_only.queue) == ({}, [])


def test_safe_read_waits_for_a_quorum_and_counts_each_follower_once() -> None:
    r = new_test_raft(1, peers=range(1, 6))
    elect(r)
    for pid in (2, 3):
        r.step(Message(type=MT.APP_RESP, from_=pid, to=1, term=1, index=1))
    r.read_messages()
    r.step(read_index(1, b"ctx"))
    r.step(heartbeat_ack(2, b"ctx"))
    r.step(heartbeat_ack(2, b"ctx"))
    assert not r.read_states
    r.step(heartbeat_ack(4, b"ctx"))
    assert r.read_states == [ReadState(index=1, request_ctx=b"ctx")]


def test_ack_for_a_later_read_also_confirms_the_earlier_ones() -> None:
    r = leader_of_three()
    r.step(read_index(1, b"first"))
    r.step(prop(1, b"x"))
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=2))
    r.step(read_index(1, b"second"))
    r.read_messages()
    r.step(beat(1))
    # A plain heartbeat carries the newest pending context.
    assert {m.context for m in r.read_messages()} == {b"second"}
    r.step(heartbeat_ack(3, b"second"))
    assert r.read_states == [
        ReadState(index=1, request_ctx=b"first"),
        ReadState(index=2, request_ctx=b"second"),
    ]


def test_heartbeat_ack_without_context_confirms_no_read() -> None:
    r = leader_of_three()
    r.step(read_index(1, b"ctx"))
    r.step(heartbeat_ack(2, b""))
    r.step(heartbeat_ack(3, b"other"))
    assert not r.read_states


def test_safe_reads_from_every_member_return_the_commit_index_at_request_time() -> None:
    a, b, c = (new_test_raft(i, peers=[1, 2, 3]) for i in (1, 2, 3))
    nt = Network(a, b, c)
    b.randomized_election_timeout = b.election_timeout + 1
    for _ in range(b.election_timeout):
        b.tick()
    nt.send(hup(1))
    assert a.state == LEADER
    for requester, want_index, ctx in [
        (a, 11, b"ctx1"),
        (b, 21, b"ctx2"),
        (c, 31, b"ctx3"),
        (a, 41, b"ctx4"),
        (b, 51, b"ctx5"),
        (c, 61, b"ctx6"),
    ]:
        for _ in range(10):
            nt.send(prop(1))
        nt.send(read_index(requester.id, ctx))
        assert requester.read_states == [ReadState(index=want_index, request_ctx=ctx)]
        requester.read_states = []


def test_read_waits_until_the_new_leader_commits_an_entry_of_its_term() -> None:
    members = []
    for pid, commit in ((1, 1), (2, 2), (3, 2)):
        s = new_storage([1, 2, 3], entries=entries_with_terms([1, 1]))
        s.set_hard_state(HardState(term=1, commit=commit))
        members.append(new_test_raft(pid, storage=s, applied=commit))
    nt = Network(*members)
    nt.ignore(MT.APP)
    nt.send(hup(1))
    lead = members[0]
    assert (lead.state, lead.term, lead.raft_log.committed) == (LEADER, 2, 1)
    nt.send(read_index(1, b"ctx"))
    assert not lead.read_states
    nt.recover()
    # The heartbeat round makes the followers fetch index 3 (term 2); its commit
    # releases the parked read, answered at that commit index.
    nt.send(beat(1))
    assert lead.raft_log.committed == 3
    assert lead.read_states == [ReadState(index=3, request_ctx=b"ctx")]
    nt.send(prop(1))
    nt.send(read_index(1, b"ctx2"))
    assert lead.read_states[1:] == [ReadState(index=4, request_ctx=b"ctx2")]


# --------------------------------------------------------------- LEASE_BASED


def test_lease_read_is_answered_at_once_without_a_heartbeat_round() -> None:
    r = leader_of_three(check_quorum=True, read_only_option=ReadOnlyOption.LEASE_BASED)
    r.step(read_index(1, b"ctx"))
    assert r.read_states == [ReadState(index=1, request_ctx=b"ctx")]
    assert r.read_messages() == []


def test_lease_reads_from_every_member_return_the_leader_commit_index() -> None:
    nt = Network(None, None, None, config=lease_based)
    b = nt.raft(2)
    b.randomized_election_timeout = b.election_timeout + 1
    for _ in range(b.election_timeout):
        b.tick()
    nt.send(hup(1))
    for pid, want_index, ctx in [(1, 11, b"ctx1"), (2, 21, b"ctx2"), (3, 31, b"ctx3")]:
        for _ in range(10):
            nt.send(prop(1))
        nt.send(read_index(pid, ctx))
        r = nt.raft(pid)
        assert r.read_states == [ReadState(index=want_index, request_ctx=ctx)]
        r.read_states = []


def test_lease_read_also_waits_for_an_entry_of_the_leader_term() -> None:
    r = new_test_raft(
        1, peers=[1, 2, 3], check_quorum=True, read_only_option=ReadOnlyOption.LEASE_BASED
    )
    elect(r)
    r.step(read_index(1, b"ctx"))
    assert not r.read_states
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=1, index=1))
    assert r.read_states == [ReadState(index=1, request_ctx=b"ctx")]


# ------------------------------------------------------- forwarded requests


def test_follower_forwards_a_read_to_the_leader_and_records_the_answer() -> None:
    f = new_test_raft(2, peers=[1, 2, 3])
    f.become_follower(1, 1)
    f.step(read_index(2, b"ctx"))
    (fwd,) = f.read_messages()
    assert (fwd.type, fwd.from_, fwd.to, fwd.term, fwd.entries) == (
        MT.READ_INDEX,
        2,
        1,
        0,
        (Entry(0, 0, data=b"ctx"),),
    )
    lead = leader_of_three()
    lead.step(fwd)
    lead.read_messages()
    lead.step(heartbeat_ack(2, b"ctx"))
    (answer,) = lead.read_messages()
    assert (answer.type, answer.to, answer.term, answer.index, answer.entries) == (
        MT.READ_INDEX_RESP,
        2,
        1,
        1,
        (Entry(0, 0, data=b"ctx"),),
    )
    assert not lead.read_states
    f.step(answer)
    assert f.read_states == [ReadState(index=1, request_ctx=b"ctx")]


def test_follower_without_a_leader_drops_a_read() -> None:
    f = new_test_raft(2, peers=[1, 2, 3])
    f.become_follower(1, NONE)
    f.step(read_index(2, b"ctx"))
    assert (f.read_messages(), list(f.read_states)) == ([], [])


@pytest.mark.parametrize("requester", [1, 2])
def test_single_voter_answers_reads_at_once_even_for_a_learner(requester: int) -> None:
    s1 = new_storage([1], learners=[2])
    a = new_test_raft(1, storage=s1)
    b = new_test_raft(2, storage=new_storage([1], learners=[2]))
    nt = Network(a, b)
    nt.send(hup(1))
    assert (a.state, a.raft_log.committed) == (LEADER, 1)
    nt.send(prop(1, b"x"))
    nt.send(read_index(requester, b"ctx"))
    # No heartbeat round: the single voter is the quorum.
    assert nt.raft(requester).read_states == [ReadState(index=2, request_ctx=b"ctx")]


def test_single_member_group_answers_reads_immediately() -> None:
    r = new_test_raft(1, peers=[1])
    r.step(hup(1))
    assert (r.state, r.raft_log.committed) == (LEADER, 1)
    r.read_messages()
    r.step(read_index(1, b"ctx"))
    assert r.read_states == [ReadState(index=1, request_ctx=b"ctx")]
    assert r.read_messages() == []
