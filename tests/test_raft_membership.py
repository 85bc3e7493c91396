"""Membership changes: voters, learners, joint consensus, pending-change rules, removals."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from multiraft.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    StateType,
)
from multiraft.raft.raft import Raft
from raft_harness import Network, new_storage, new_test_raft, next_ents
from raft_scenarios import leader_of, peer_msg, propose
from storage import MemoryStorage

MT = MessageType
CCT = ConfChangeType
ADD, REMOVE, ADD_LEARNER = CCT.ADD_NODE, CCT.REMOVE_NODE, CCT.ADD_LEARNER_NODE


def cc(t: ConfChangeType, node: int) -> ConfChangeV2:
    return ConfChange(t, node).as_v2()


def v2(*changes: tuple[ConfChangeType, int], transition: Any = None) -> ConfChangeV2:
    return ConfChangeV2(
        changes=tuple(ConfChangeSingle(t, n) for t, n in changes),
        transition=transition if transition is not None else ConfChangeTransition.AUTO,
    )


def propose_conf_change(r: Raft, change: ConfChange | ConfChangeV2) -> None:
    etype = EntryType.CONF_CHANGE if isinstance(change, ConfChange) else EntryType.CONF_CHANGE_V2
    r.step(
        Message(type=MT.PROP, from_=r.id, to=r.id, entries=(Entry(0, 0, etype, change.to_bytes()),))
    )


def last_entry(r: Raft) -> Entry:
    (e,) = r.raft_log.entries(r.raft_log.last_index())
    return e


# ------------------------------------------------------- single changes


def test_add_voter() -> None:
    r = new_test_raft(1, peers=[1])
    cs = r.apply_conf_change(cc(ADD, 2))
    assert (cs.voters, cs.learners) == ((1, 2), ())
    assert r.trk.config.voters.ids() == {1, 2}
    assert not r.trk.progress[2].is_learner


def test_add_learner() -> None:
    r = new_test_raft(1, peers=[1])
    cs = r.apply_conf_change(cc(ADD_LEARNER, 2))
    assert (cs.voters, cs.learners) == ((1,), (2,))
    assert r.trk.progress[2].is_learner
    assert not r.is_learner


def test_promote_learner_to_voter() -> None:
    r = new_test_raft(1, 10, 1, new_storage([1], [2]))
    assert r.trk.progress[2].is_learner
    cs = r.apply_conf_change(cc(ADD, 2))
    assert (cs.voters, cs.learners) == ((1, 2), ())
    assert not r.trk.progress[2].is_learner


def test_remove_voter_and_learner() -> None:
    r = new_test_raft(1, 10, 1, new_storage([1, 2], [3]))
    cs = r.apply_conf_change(cc(REMOVE, 2))
    assert (cs.voters, cs.learners) == ((1,), (3,))
    cs = r.apply_conf_change(cc(REMOVE, 3))
    assert (cs.voters, cs.learners) == ((1,), ())
    assert sorted(r.trk.progress) == [1]


# ------------------------------------------------------------- learners


def test_learner_receives_the_log_but_does_not_count_for_commit() -> None:
    r = leader_of([1, 2], new_storage([1, 2], [3]))
    propose(r)
    assert r.raft_log.last_index() == 2
    sent_to = sorted(m.to for m in r.read_messages())
    assert sent_to == [2, 3]
    r.step(peer_msg(MT.APP_RESP, 3, 1, 1, index=2))
    assert r.raft_log.committed == 0
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=2))
    assert r.raft_log.committed == 2


def test_learner_log_follows_the_leader() -> None:
    members = Members([1, 2], [3])
    members.send(Message(type=MT.HUP, from_=1, to=1))
    members.send(Message(type=MT.PROP, from_=1, to=1, entries=(Entry(0, 0, data=b"x"),)))
    leader, learner = members.raft(1), members.raft(3)
    assert leader.state == StateType.LEADER
    assert learner.raft_log.all_entries() == leader.raft_log.all_entries()
    assert learner.raft_log.committed == leader.raft_log.committed == 2
    assert (learner.state, learner.lead, learner.is_learner) == (StateType.FOLLOWER, 1, True)


def test_learner_never_campaigns() -> None:
    r = new_test_raft(2, 10, 1, new_storage([1], [2]))
    assert r.is_learner
    for _ in range(100):
        r.tick()
    r.step(Message(type=MT.HUP, from_=2, to=2))
    assert (r.state, r.term) == (StateType.FOLLOWER, 0)
    assert r.read_messages() == []


def test_candidate_asks_only_voters_and_a_learner_grant_does_not_elect() -> None:
    r = new_test_raft(1, 10, 1, new_storage([1, 2, 3], [4]))
    r.step(Message(type=MT.HUP, from_=1, to=1))
    assert [(m.type, m.to) for m in r.read_messages()] == [(MT.VOTE, 2), (MT.VOTE, 3)]
    r.step(peer_msg(MT.VOTE_RESP, 4, 1, 1))
    assert (r.state, r.term) == (StateType.CANDIDATE, 1)
    r.step(peer_msg(MT.VOTE_RESP, 2, 1, 1))
    assert (r.state, r.term) == (StateType.LEADER, 1)


def test_learner_answers_a_vote_request_as_it_may_already_be_a_voter() -> None:
    # A candidate with a newer config may count this learner as a voter; refusing
    # could leave that config without a quorum (etcd allows learners to vote).
    r = new_test_raft(2, 10, 1, new_storage([1], [2]))
    r.become_follower(1, 0)
    r.step(peer_msg(MT.VOTE, 1, 2, 2, index=11, log_term=11))
    msgs = r.read_messages()
    assert [(m.type, m.to, m.term, m.reject) for m in msgs] == [(MT.VOTE_RESP, 1, 2, False)]


# ------------------------------------------------ pending conf changes


def test_second_conf_change_before_the_first_is_applied_becomes_an_empty_entry() -> None:
    r = leader_of([1])
    propose_conf_change(r, ConfChange(ADD_LEARNER, 2))
    first = last_entry(r)
    assert (first.index, first.type) == (2, EntryType.CONF_CHANGE)
    assert r.pending_conf_index == 2
    assert r.raft_log.committed == 2  # a single voter commits at once
    propose_conf_change(r, ConfChange(ADD_LEARNER, 3))
    assert last_entry(r) == Entry(1, 3, EntryType.NORMAL, b"")
    assert r.pending_conf_index == 2
    # Once the first one is applied, a new change is accepted.
    r.raft_log.applied_to(3)
    r.apply_conf_change(cc(ADD_LEARNER, 2))
    propose_conf_change(r, ConfChange(ADD_LEARNER, 3))
    third = last_entry(r)
    assert (third.index, third.type) == (4, EntryType.CONF_CHANGE)
    assert ConfChange.from_bytes(third.data) == ConfChange(ADD_LEARNER, 3)
    assert r.pending_conf_index == 4


def test_new_leader_treats_its_whole_uncommitted_tail_as_a_pending_conf_change() -> None:
    s = new_storage([1, 2], entries=[Entry(1, 1), Entry(1, 2)])
    s.set_hard_state(HardState(term=1, commit=1))
    r = leader_of([1, 2], s)
    assert r.pending_conf_index == 2
    propose_conf_change(r, ConfChange(ADD_LEARNER, 3))
    assert last_entry(r) == Entry(2, 4, EntryType.NORMAL, b"")


def test_campaign_refused_while_a_committed_conf_change_is_unapplied() -> None:
    change = ConfChange(ADD, 3)
    s = new_storage(
        [1, 2], entries=[Entry(1, 1), Entry(1, 2, EntryType.CONF_CHANGE, change.to_bytes())]
    )
    s.set_hard_state(HardState(term=1, commit=2))
    r = new_test_raft(1, 10, 1, s)
    assert (r.raft_log.committed, r.raft_log.applied) == (2, 0)
    r.step(Message(type=MT.HUP, from_=1, to=1))
    for _ in range(40):
        r.tick()
    assert (r.state, r.term) == (StateType.FOLLOWER, 1)
    assert r.read_messages() == []
    r.raft_log.applied_to(2)
    r.apply_conf_change(change.as_v2())
    r.step(Message(type=MT.HUP, from_=1, to=1))
    assert (r.state, r.term) == (StateType.CANDIDATE, 2)
    assert sorted(m.to for m in r.read_messages()) == [2, 3]


# ------------------------------------------------------------- removals


def test_removing_a_node_commits_entries_the_smaller_quorum_covers() -> None:
    s = new_storage([1, 2])
    r = new_test_raft(1, 5, 1, s)
    r.become_candidate()
    r.become_leader()
    removal = ConfChange(REMOVE, 2)
    propose_conf_change(r, removal)
    assert next_ents(r, s) == []
    cc_index = r.raft_log.last_index()
    assert cc_index == 2
    propose(r, b"hello")
    # Node 2 acknowledges the conf change but not the proposal after it.
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=cc_index))
    ents = next_ents(r, s)
    assert [(e.index, e.type, e.data) for e in ents] == [
        (1, EntryType.NORMAL, b""),
        (2, EntryType.CONF_CHANGE, removal.to_bytes()),
    ]
    r.apply_conf_change(removal.as_v2())
    ents = next_ents(r, s)
    assert [(e.index, e.type, e.data) for e in ents] == [(3, EntryType.NORMAL, b"hello")]


def test_removal_shrinks_the_quorum_and_sends_the_new_commit_at_once() -> None:
    r = leader_of([1, 2, 3, 4])
    propose(r)
    r.read_messages()
    r.step(peer_msg(MT.APP_RESP, 2, 1, 1, index=2))
    r.read_messages()
    assert r.raft_log.committed == 0  # 2 of 4 is no quorum
    r.apply_conf_change(cc(REMOVE, 4))
    assert r.raft_log.committed == 2  # 2 of 3 is
    # The new commit goes to 2 at once; 3 still has its first probe unanswered.
    msgs = r.read_messages()
    assert [(m.to, m.type, m.commit) for m in msgs] == [(2, MT.APP, 2)]
    assert r.trk.progress[3].msg_app_flow_paused


def test_removed_leader_steps_down_when_asked_to() -> None:
    r = leader_of([1, 2, 3], step_down_on_removal=True)
    cs = r.apply_conf_change(cc(REMOVE, 1))
    assert cs.voters == (2, 3)
    assert (r.state, r.term, r.lead) == (StateType.FOLLOWER, 1, 0)
    assert not r.promotable()


def test_removed_leader_keeps_leading_by_default_but_refuses_proposals() -> None:
    r = leader_of([1, 2, 3])
    r.apply_conf_change(cc(REMOVE, 1))
    assert (r.state, r.term, r.lead) == (StateType.LEADER, 1, 1)
    with pytest.raises(ProposalDroppedError):
        propose(r)
    r.step(Message(type=MT.BEAT, from_=1, to=1))
    assert sorted((m.type, m.to) for m in r.read_messages()) == [
        (MT.HEARTBEAT, 2),
        (MT.HEARTBEAT, 3),
    ]


# ---------------------------------------------------- joint consensus


class Members:
    """A Network of members that also persist and apply committed entries."""

    def __init__(self, voters: Iterable[int], learners: Iterable[int] = ()) -> None:
        voters, learners = list(voters), list(learners)
        self.storage = {pid: new_storage(voters, learners) for pid in sorted(voters + learners)}
        self.net = Network(*(new_test_raft(pid, 10, 1, s) for pid, s in self.storage.items()))
        self.conf: dict[int, ConfState] = {}

    def raft(self, pid: int) -> Raft:
        return self.net.raft(pid)

    def send(self, *msgs: Message) -> None:
        self.net.send(*msgs)

    def apply_all(self) -> None:
        """Every member persists, applies what is committed (conf changes too) and advances."""
        for pid, s in self.storage.items():
            r = self.raft(pid)
            ents = unstable_then_committed(r, s)
            for e in ents:
                if e.type == EntryType.CONF_CHANGE:
                    self.conf[pid] = r.apply_conf_change(ConfChange.from_bytes(e.data).as_v2())
                elif e.type == EntryType.CONF_CHANGE_V2:
                    self.conf[pid] = r.apply_conf_change(ConfChangeV2.from_bytes(e.data))
            if ents:
                r.advance_applied(ents[-1].index)

    def propose_conf_change(self, change: ConfChangeV2) -> None:
        data = change.to_bytes()
        self.send(
            Message(
                type=MT.PROP, from_=1, to=1, entries=(Entry(0, 0, EntryType.CONF_CHANGE_V2, data),)
            )
        )


def unstable_then_committed(r: Raft, s: MemoryStorage) -> list[Entry]:
    unstable = r.raft_log.unstable_entries()
    if unstable:
        s.append(unstable)
        r.raft_log.stable_to(unstable[-1].index, unstable[-1].term)
    return r.raft_log.next_committed_ents()


def elected(members: Members) -> Raft:
    members.send(Message(type=MT.HUP, from_=1, to=1))
    members.apply_all()
    leader = members.raft(1)
    assert (leader.state, leader.raft_log.committed, leader.raft_log.applied) == (
        StateType.LEADER,
        1,
        1,
    )
    return leader


def test_joint_auto_leader_appends_the_leave_entry_once_joint_is_applied() -> None:
    members = Members([1, 2, 3], [4])
    leader = elected(members)
    members.propose_conf_change(v2((ADD, 4), (REMOVE, 3)))
    assert leader.raft_log.committed == 2
    members.apply_all()
    joint = ConfState(voters=(1, 2, 4), voters_outgoing=(1, 2, 3), auto_leave=True)
    assert all(members.conf[pid] == joint for pid in (1, 2, 3, 4))
    # Applying the joint config made the leader append the leave entry itself.
    leave = last_entry(leader)
    assert (leave.index, leave.term, leave.type) == (3, 1, EntryType.CONF_CHANGE_V2)
    assert ConfChangeV2.from_bytes(leave.data) == ConfChangeV2()
    assert leader.pending_conf_index == 3
    # As in current etcd the leave entry is proposed: it is broadcast at once to every
    # member of both halves of the joint configuration.
    out = leader.read_messages()
    assert [(m.type, m.to, m.index, [e.index for e in m.entries]) for m in out] == [
        (MT.APP, 2, 2, [3]),
        (MT.APP, 3, 2, [3]),
        (MT.APP, 4, 2, [3]),
    ]
    members.send(*out)
    assert leader.raft_log.committed == 3
    assert all(members.raft(pid).raft_log.last_index() == 3 for pid in (2, 3, 4))
    members.apply_all()
    final = ConfState(voters=(1, 2, 4))
    assert all(members.conf[pid] == final for pid in (1, 2, 3, 4))
    assert sorted(leader.trk.progress) == [1, 2, 4]
    assert leader.raft_log.last_index() == 3  # nothing more was appended


def test_joint_implicit_enters_joint_for_a_single_change_and_leaves_on_its_own() -> None:
    members = Members([1, 2, 3], [4])
    leader = elected(members)
    members.propose_conf_change(v2((ADD, 4), transition=ConfChangeTransition.IMPLICIT))
    members.apply_all()
    assert members.conf[1] == ConfState(
        voters=(1, 2, 3, 4), voters_outgoing=(1, 2, 3), auto_leave=True
    )
    assert last_entry(leader).type == EntryType.CONF_CHANGE_V2
    members.send(*leader.read_messages())
    members.apply_all()
    assert all(members.conf[pid] == ConfState(voters=(1, 2, 3, 4)) for pid in (1, 2, 3, 4))
    assert leader.raft_log.committed == 3


def test_joint_explicit_stays_joint_until_an_empty_change_is_proposed() -> None:
    members = Members([1, 2, 3], [4])
    leader = elected(members)
    members.propose_conf_change(v2((ADD, 4), transition=ConfChangeTransition.EXPLICIT))
    members.apply_all()
    joint = ConfState(voters=(1, 2, 3, 4), voters_outgoing=(1, 2, 3))
    assert members.conf[1] == joint
    assert leader.raft_log.last_index() == 2  # no automatic leave
    assert leader.read_messages() == []
    # Any other change is refused while joint: it becomes an empty normal entry.
    members.propose_conf_change(v2((REMOVE, 2)))
    assert leader.raft_log.entries(3) == [Entry(1, 3, EntryType.NORMAL, b"")]
    members.apply_all()
    assert members.conf[1] == joint
    members.propose_conf_change(ConfChangeV2())
    assert last_entry(leader) == Entry(1, 4, EntryType.CONF_CHANGE_V2, ConfChangeV2().to_bytes())
    assert leader.raft_log.committed == 4
    members.apply_all()
    assert all(members.conf[pid] == ConfState(voters=(1, 2, 3, 4)) for pid in (1, 2, 3, 4))


def test_leave_joint_outside_a_joint_config_becomes_an_empty_entry() -> None:
    r = leader_of([1])
    propose_conf_change(r, ConfChangeV2())
    assert last_entry(r) == Entry(1, 2, EntryType.NORMAL, b"")
    assert r.pending_conf_index == 0


def test_rawnode_leader_leaves_an_auto_joint_config_through_ready_and_advance() -> None:
    s = MemoryStorage()
    s.set_conf_state(ConfState(voters=(1,)))
    rn = RawNode(Config(id=1, storage=s, election_tick=10, heartbeat_tick=1))
    rn.campaign()
    applied: list[Entry] = []
    confs: list[ConfState] = []

    def handle_ready() -> None:
        rd = rn.ready()
        s.append(rd.entries)
        if rd.hard_state is not None:
            s.set_hard_state(rd.hard_state)
        for e in rd.committed_entries:
            applied.append(e)
            if e.type == EntryType.CONF_CHANGE_V2:
                confs.append(rn.apply_conf_change(ConfChangeV2.from_bytes(e.data)))
        rn.advance(rd)

    handle_ready()
    assert rn.raft.state == StateType.LEADER
    rn.propose_conf_change(v2((ADD_LEARNER, 2), (ADD_LEARNER, 3)))
    handle_ready()
    assert confs == [ConfState(voters=(1,), voters_outgoing=(1,), learners=(2, 3), auto_leave=True)]
    assert rn.has_ready()
    handle_ready()
    assert confs[-1] == ConfState(voters=(1,), learners=(2, 3))
    assert [(e.index, e.type) for e in applied] == [
        (1, EntryType.NORMAL),
        (2, EntryType.CONF_CHANGE_V2),
        (3, EntryType.CONF_CHANGE_V2),
    ]
    assert ConfChangeV2.from_bytes(applied[2].data) == ConfChangeV2()


# --------------------------------------------------------- encoding


@pytest.mark.parametrize(
    "change",
    [
        ConfChange(ADD, 1),
        ConfChange(REMOVE, 7, b"ctx"),
        ConfChange(CCT.UPDATE_NODE, 3, b"\x00\xff"),
        ConfChange(ADD_LEARNER, (1 << 64) - 1),
    ],
)
def test_conf_change_bytes_round_trip(change: ConfChange) -> None:
    data = change.to_bytes()
    assert isinstance(data, bytes)
    assert ConfChange.from_bytes(data) == change
    assert change.as_v2() == ConfChangeV2(
        changes=(ConfChangeSingle(change.type, change.node_id),), context=change.context
    )


@pytest.mark.parametrize(
    "change",
    [
        ConfChangeV2(),
        v2((ADD, 4), (REMOVE, 3)),
        v2((ADD_LEARNER, 2), transition=ConfChangeTransition.EXPLICIT),
        ConfChangeV2(
            changes=(ConfChangeSingle(CCT.UPDATE_NODE, 9),),
            transition=ConfChangeTransition.IMPLICIT,
            context=b"why",
        ),
    ],
)
def test_conf_change_v2_bytes_round_trip(change: ConfChangeV2) -> None:
    assert ConfChangeV2.from_bytes(change.to_bytes()) == change
    assert change.as_v2() is change
