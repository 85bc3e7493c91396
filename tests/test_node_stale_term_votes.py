"""Vote requests from an older term (multiraft/older_term_votes.py).

etcd raft drops such a request unanswered; the candidate is expected to learn
the newer term from the voter's own messages. A voter whose membership is stale
(it missed the entries that made the candidate a member) never writes to the
candidate, so without pre-vote the two can stay apart for good: the candidate
holds the log the voter needs but never reaches its term. A leaderless voter
that will not write to the candidate answers with its term, and the candidate
campaigns again at once.
"""

from __future__ import annotations

import trio

from multiraft.frames import Frame, GroupMessage
from multiraft.raft import ConfChange, ConfChangeType, ConfState, StateType
from multiraft.raft.types import Message, MessageType
from node_cluster import Cluster, RecordingStateMachine, wait_until
from transport.memory import MemoryTransport

#: One election timeout of the cluster's nodes (10 ticks of 0.1 s), in seconds.
ELECTION_TIMEOUT = 1.0


def _term(c: Cluster, node_id: int, group_id: int = 1) -> int:
    term: int = c.nodes[node_id].status(group_id).hard_state.term
    return term


async def _messages_until(peer: MemoryTransport, kind: MessageType) -> list[Message]:
    """What reaches the hand-played ``peer`` up to the first message of type ``kind``."""
    seen: list[Message] = []
    while True:
        item = await peer.receive()
        assert isinstance(item, Frame)
        for gm in item.messages:
            seen.append(gm.message)
            if gm.message.type is kind:
                return seen


async def _next_message(peer: MemoryTransport, kind: MessageType) -> Message:
    """The next message of type ``kind`` that reaches the hand-played ``peer``."""
    return (await _messages_until(peer, kind))[-1]


async def test_stale_voter_with_a_higher_term_elects_the_member_it_does_not_know(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Group 1 moves from (1, 2, 3) to (3, 4) while node 3 is cut off and campaigns
    # alone: node 3 ends with the older membership (1, 2, 3), a short log and a
    # much higher term; node 4 has the log and the membership, and the lower term.
    async with Cluster(4, pre_vote=False) as c:
        await c.create_groups([1], members=[1, 2, 3])
        await c.wait_leaders([1], node_ids=[1, 2, 3])
        c.net.isolate(3)
        start_term = _term(c, 1)
        await wait_until(lambda: _term(c, 3) >= start_term + 20, 60, "node 3 campaigns alone")
        leader = c.nodes[1]
        await leader.change_membership(1, ConfChange(ConfChangeType.ADD_NODE, 4))
        sm4 = c.sms[(1, 4)] = RecordingStateMachine()
        await c.nodes[4].create_group(1, [], state_machine=sm4, join=True)
        await leader.change_membership(1, ConfChange(ConfChangeType.REMOVE_NODE, 2))
        cs = await leader.change_membership(1, ConfChange(ConfChangeType.REMOVE_NODE, 1))
        assert cs == ConfState(voters=(3, 4))
        removed_at = leader.applied_index(1)
        await wait_until(lambda: c.nodes[4].applied_index(1) == removed_at, 5, "node 4 applies")
        assert c.nodes[4].membership(1) == cs
        assert c.nodes[3].membership(1) == ConfState(voters=(1, 2, 3))
        await c.nodes[1].remove_group(1)
        await c.nodes[2].remove_group(1)
        stale_term = _term(c, 3)
        assert stale_term > _term(c, 4) + 10
        c.net.heal()
        # Node 3 asks only nodes 1 and 2, whose tombstones drop its requests; node
        # 4's requests reach node 3 with an older term. Node 3 rejects them at its
        # own term, node 4 campaigns again at once at the next term and wins:
        # within node 4's first election timeout after losing its leader.
        await c.wait_leaders([1], node_ids=[3, 4], timeout=2 * ELECTION_TIMEOUT)
        assert c.nodes[4].leader_of(1) == 4
        assert c.nodes[4].status(1).soft_state.raft_state is StateType.LEADER
        assert _term(c, 4) > stale_term
        await wait_until(lambda: c.nodes[3].membership(1) == cs, 5, "node 3 learns (3, 4)")
        result = await c.nodes[4].propose(1, b"after")
        assert isinstance(result, tuple)
        index, command = result
        assert command == b"after"
        await wait_until(lambda: c.nodes[3].applied_index(1) == index, 5, "node 3 applies")
        assert c.sms[(1, 3)].applied[-1] == (index, b"after")


async def test_vote_request_from_an_older_term_and_outside_the_membership_is_rejected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Nodes 8 and 9 are played by hand on the cluster's network; only 8 is a member.
    async with Cluster(1, pre_vote=False) as c:
        member, outsider = c.net.transport(8), c.net.transport(9)
        node = c.nodes[1]
        sm = c.sms[(1, 1)] = RecordingStateMachine()
        await node.create_group(1, [1, 8], state_machine=sm, campaign=True)
        request = await _next_message(member, MessageType.VOTE)
        status = node.status(1)
        term = status.hard_state.term
        assert (request.term, status.hard_state.vote) == (term, 1)
        assert status.soft_state.raft_state is StateType.CANDIDATE
        # The initial membership is at index 2, term 1: the requests' logs match it.
        for frm, peer in ((9, outsider), (8, member)):
            older = Message(
                type=MessageType.VOTE, to=1, from_=frm, term=term - 1, index=2, log_term=1
            )
            assert peer.send(1, Frame(frm, 1, messages=[GroupMessage(1, older)]))
        with trio.fail_after(ELECTION_TIMEOUT / 2):
            answer = await _next_message(outsider, MessageType.VOTE_RESP)
        assert (answer.from_, answer.to, answer.term, answer.reject) == (1, 9, term, True)
        status = node.status(1)
        assert (status.hard_state.term, status.hard_state.vote) == (term, 1)
        assert status.soft_state.raft_state is StateType.CANDIDATE
        # The member is left to node 1's own vote requests, which carry its term.
        with trio.fail_after(3 * ELECTION_TIMEOUT):
            seen = await _messages_until(member, MessageType.VOTE)
        assert [m.type for m in seen] == [MessageType.VOTE]
        assert seen[0].term > term


async def test_candidate_rejected_at_a_newer_term_campaigns_again_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(1, pre_vote=False) as c:
        peer = c.net.transport(9)
        node = c.nodes[1]
        sm = c.sms[(1, 1)] = RecordingStateMachine()
        await node.create_group(1, [1, 9], state_machine=sm, campaign=True)
        request = await _next_message(peer, MessageType.VOTE)
        newer = request.term + 5
        rejection = Message(type=MessageType.VOTE_RESP, to=1, from_=9, term=newer, reject=True)
        assert peer.send(1, Frame(9, 1, messages=[GroupMessage(1, rejection)]))
        sent = trio.current_time()
        # Not an election timeout later: the next vote request is the answer's.
        with trio.fail_after(ELECTION_TIMEOUT / 2):
            again = await _next_message(peer, MessageType.VOTE)
        assert trio.current_time() - sent < ELECTION_TIMEOUT / 2
        assert (again.term, again.index, again.log_term) == (newer + 1, 2, 1)
        status = node.status(1)
        assert (status.hard_state.term, status.hard_state.vote) == (newer + 1, 1)
        assert status.soft_state.raft_state is StateType.CANDIDATE


async def test_voter_with_a_leader_leaves_an_older_vote_request_to_the_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Node 9 is a member the leader writes to: the leader's messages carry the term.
    async with Cluster(2, pre_vote=False) as c:
        peer = c.net.transport(9)
        for i in (1, 2):
            sm = c.sms[(1, i)] = RecordingStateMachine()
            await c.nodes[i].create_group(1, [1, 2, 9], state_machine=sm, campaign=(i == 1))
        await c.wait_leaders([1], node_ids=[1, 2])
        term = _term(c, 2)
        older = Message(type=MessageType.VOTE, to=2, from_=9, term=term - 1, index=3, log_term=1)
        assert peer.send(2, Frame(9, 2, messages=[GroupMessage(1, older)]))
        seen: list[tuple[int, MessageType, int]] = []
        with trio.move_on_after(3 * ELECTION_TIMEOUT):
            while True:
                item = await peer.receive()
                assert isinstance(item, Frame)
                seen += [(item.from_node, gm.message.type, gm.message.term) for gm in item.messages]
        assert (2, MessageType.VOTE_RESP, term) not in seen
        assert {frm for frm, _, _ in seen} == {1}
        assert (1, MessageType.APP, term) in seen
        assert c.nodes[2].leader_of(1) == 1
        assert _term(c, 2) == term
