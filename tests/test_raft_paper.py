"""Scenarios of the Raft paper (sections 5.1 to 5.4), checked against the raft core.

Each test names the rule of the paper it pins down; the leader and followers
are driven message by message so every index, term and message is visible.
"""

from __future__ import annotations

import pytest

from multiraft.raft import NONE, Entry, HardState, Message, MessageType, StateType
from multiraft.raft.raft import Raft
from raft_harness import Blackhole, Network, new_storage, new_test_raft, next_ents
from raft_steps import elect, entries_with_terms, hup, prop, terms_of
from storage import MemoryStorage

MT = MessageType
FOLLOWER, CANDIDATE, LEADER = StateType.FOLLOWER, StateType.CANDIDATE, StateType.LEADER


def accept_and_reply(m: Message) -> Message:
    """The follower's successful answer to append ``m``."""
    assert m.type == MT.APP
    return Message(
        type=MT.APP_RESP, from_=m.to, to=m.from_, term=m.term, index=m.index + len(m.entries)
    )


def commit_noop_entry(r: Raft, s: MemoryStorage) -> None:
    """Have every follower acknowledge the new leader's empty entry, then persist it."""
    assert r.state == LEADER
    r.bcast_append()
    for m in r.read_messages():
        r.step(accept_and_reply(m))
    r.read_messages()  # the appends that carry the new commit index
    next_ents(r, s)


def leader_with_committed_noop(peers: list[int]) -> tuple[Raft, MemoryStorage]:
    s = new_storage(peers)
    r = new_test_raft(1, storage=s)
    elect(r)
    commit_noop_entry(r, s)
    return r, s


# -------------------------------------------------------- 5.1 basics


def test_members_start_as_followers_at_term_zero() -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    assert (r.state, r.term, r.vote, r.lead) == (FOLLOWER, 0, NONE, NONE)


def test_leader_sends_heartbeats_without_entries_every_heartbeat_interval() -> None:
    r = new_test_raft(1, election=10, heartbeat=1, peers=[1, 2, 3])
    elect(r)
    for _ in range(10):
        r.append_entry([Entry(0, 0)])
    r.read_messages()
    r.tick()
    msgs = sorted(r.read_messages(), key=lambda m: m.to)
    # Followers have matched nothing yet, so each heartbeat carries commit 0.
    assert [(m.type, m.from_, m.to, m.term, m.commit, m.entries) for m in msgs] == [
        (MT.HEARTBEAT, 1, 2, 1, 0, ()),
        (MT.HEARTBEAT, 1, 3, 1, 0, ()),
    ]


def test_leader_heartbeat_interval_follows_heartbeat_tick() -> None:
    r = new_test_raft(1, election=10, heartbeat=3, peers=[1, 2])
    elect(r)
    r.read_messages()
    sent_at = []
    for t in range(1, 10):
        r.tick()
        if r.read_messages():
            sent_at.append(t)
    assert sent_at == [3, 6, 9]


# ------------------------------------------------- 5.2 leader election


@pytest.mark.parametrize(
    ("size", "votes", "want"),
    [
        (1, {}, LEADER),
        (3, {2: True, 3: True}, LEADER),
        (3, {2: True}, LEADER),
        (5, {2: True, 3: True, 4: True, 5: True}, LEADER),
        (5, {2: True, 3: True, 4: True}, LEADER),
        (5, {2: True, 3: True}, LEADER),
        (3, {2: False, 3: False}, FOLLOWER),
        (5, {2: False, 3: False, 4: False, 5: False}, FOLLOWER),
        (5, {2: True, 3: False, 4: False, 5: False}, FOLLOWER),
        (3, {}, CANDIDATE),
        (5, {2: True}, CANDIDATE),
        (5, {2: False, 3: False}, CANDIDATE),
        (5, {}, CANDIDATE),
    ],
)
def test_one_round_of_votes_decides_win_loss_or_wait(
    size: int, votes: dict[int, bool], want: StateType
) -> None:
    r = new_test_raft(1, peers=list(range(1, size + 1)))
    r.step(hup(1))
    for pid, granted in votes.items():
        r.step(Message(type=MT.VOTE_RESP, from_=pid, to=1, term=r.term, reject=not granted))
    assert (r.state, r.term) == (want, 1)


@pytest.mark.parametrize(
    ("voted_for", "candidate", "want_reject"),
    [(NONE, 2, False), (NONE, 3, False), (2, 2, False), (3, 3, False), (2, 3, True), (3, 2, True)],
)
def test_follower_votes_first_come_first_served(
    voted_for: int, candidate: int, want_reject: bool
) -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    r.load_state(HardState(term=1, vote=voted_for))
    r.step(Message(type=MT.VOTE, from_=candidate, to=1, term=1))
    assert [(m.type, m.from_, m.to, m.term, m.reject) for m in r.read_messages()] == [
        (MT.VOTE_RESP, 1, candidate, 1, want_reject)
    ]


@pytest.mark.parametrize("leader_term", [1, 2])
def test_candidate_falls_back_to_follower_on_append_from_a_current_leader(leader_term: int) -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    r.step(hup(1))
    assert (r.state, r.term) == (CANDIDATE, 1)
    r.step(Message(type=MT.APP, from_=2, to=1, term=leader_term))
    assert (r.state, r.term, r.lead) == (FOLLOWER, leader_term, 2)


@pytest.mark.parametrize("role", [FOLLOWER, CANDIDATE])
def test_time_to_campaign_takes_every_value_of_the_randomized_range(role: StateType) -> None:
    et = 10
    r = new_test_raft(1, election=et, peers=[1, 2, 3])
    waited: set[int] = set()
    for _ in range(50 * et):
        if role == FOLLOWER:
            r.become_follower(r.term + 1, 2)
        else:
            r.become_candidate()
        r.read_messages()
        ticks = 0
        while not r.read_messages():
            r.tick()
            ticks += 1
        waited.add(ticks)
    assert waited == set(range(et, 2 * et))


@pytest.mark.parametrize("role", [FOLLOWER, CANDIDATE])
def test_members_rarely_time_out_in_the_same_tick(role: StateType) -> None:
    members = [new_test_raft(i, peers=range(1, 6)) for i in range(1, 6)]
    rounds = 1000
    conflicts = 0
    for _ in range(rounds):
        for r in members:
            if role == FOLLOWER:
                r.become_follower(r.term + 1, NONE)
            else:
                r.become_candidate()
            r.read_messages()
        timed_out = 0
        while timed_out == 0:
            for r in members:
                r.tick()
                if r.read_messages():
                    timed_out += 1
        conflicts += timed_out > 1
    assert conflicts / rounds <= 0.3, f"{conflicts} of {rounds} rounds had a tie"


# ----------------------------------------------------- 5.3 log replication


def test_leader_appends_a_proposal_and_sends_it_to_every_follower() -> None:
    r, _ = leader_with_committed_noop([1, 2, 3])
    li = r.raft_log.last_index()
    r.step(prop(1, b"some data"))
    assert (r.raft_log.last_index(), r.raft_log.committed) == (li + 1, li)
    want = Entry(1, li + 1, data=b"some data")
    msgs = sorted(r.read_messages(), key=lambda m: m.to)
    assert [(m.type, m.to, m.term, m.index, m.log_term, m.entries, m.commit) for m in msgs] == [
        (MT.APP, 2, 1, li, 1, (want,), li),
        (MT.APP, 3, 1, li, 1, (want,), li),
    ]
    assert r.raft_log.unstable_entries() == [want]


def test_leader_commits_once_a_majority_stored_the_entry_and_tells_followers() -> None:
    r, s = leader_with_committed_noop([1, 2, 3])
    li = r.raft_log.last_index()
    r.step(prop(1, b"some data"))
    for m in r.read_messages():
        r.step(accept_and_reply(m))
    assert r.raft_log.committed == li + 1
    assert next_ents(r, s) == [Entry(1, li + 1, data=b"some data")]
    msgs = sorted(r.read_messages(), key=lambda m: m.to)
    assert [(m.type, m.to, m.commit, m.entries) for m in msgs] == [
        (MT.APP, 2, li + 1, ()),
        (MT.APP, 3, li + 1, ()),
    ]


@pytest.mark.parametrize(
    ("size", "acceptors", "want_commit"),
    [
        (1, set(), True),
        (3, set(), False),
        (3, {2}, True),
        (3, {2, 3}, True),
        (5, set(), False),
        (5, {2}, False),
        (5, {2, 3}, True),
        (5, {2, 3, 4}, True),
        (5, {2, 3, 4, 5}, True),
    ],
)
def test_leader_commits_when_a_majority_including_itself_acknowledged(
    size: int, acceptors: set[int], want_commit: bool
) -> None:
    r, _ = leader_with_committed_noop(list(range(1, size + 1)))
    li = r.raft_log.last_index()
    r.step(prop(1, b"some data"))
    for m in r.read_messages():
        if m.to in acceptors:
            r.step(accept_and_reply(m))
    assert r.raft_log.committed == (li + 1 if want_commit else li)


@pytest.mark.parametrize("previous_terms", [[], [2], [1, 2], [1]])
def test_committing_a_current_term_entry_commits_every_preceding_entry(
    previous_terms: list[int],
) -> None:
    s = new_storage([1, 2, 3], entries=entries_with_terms(previous_terms))
    s.set_hard_state(HardState(term=2))
    r = new_test_raft(1, storage=s)
    elect(r)  # term 3
    r.step(prop(1, b"some data"))
    for m in r.read_messages():
        r.step(accept_and_reply(m))
    li = len(previous_terms)
    assert next_ents(r, s) == [
        *entries_with_terms(previous_terms),
        Entry(3, li + 1),
        Entry(3, li + 2, data=b"some data"),
    ]


@pytest.mark.parametrize(
    ("entries", "commit"),
    [
        ([Entry(1, 1, data=b"some data")], 1),
        ([Entry(1, 1, data=b"some data"), Entry(1, 2, data=b"some data2")], 2),
        ([Entry(1, 1, data=b"some data2"), Entry(1, 2, data=b"some data")], 2),
        ([Entry(1, 1, data=b"some data"), Entry(1, 2, data=b"some data2")], 1),
    ],
)
def test_follower_applies_what_the_leader_says_is_committed(
    entries: list[Entry], commit: int
) -> None:
    s = new_storage([1, 2, 3])
    r = new_test_raft(1, storage=s)
    r.become_follower(1, 2)
    r.step(Message(type=MT.APP, from_=2, to=1, term=1, entries=tuple(entries), commit=commit))
    assert r.raft_log.committed == commit
    assert next_ents(r, s) == entries[:commit]


@pytest.mark.parametrize(
    ("log_term", "index", "want_index", "want_reject", "want_hint", "want_hint_term"),
    [
        # Below the commit index: nothing to check, answer with the commit index.
        (0, 0, 1, False, 0, 0),
        (1, 1, 1, False, 0, 0),
        (2, 2, 2, False, 0, 0),
        # Term mismatch at index 2: hint at the last entry of term <= 1.
        (1, 2, 2, True, 1, 1),
        # Index 3 does not exist: hint at our last entry.
        (3, 3, 3, True, 2, 2),
    ],
)
def test_follower_checks_the_entry_before_an_append_and_hints_on_rejection(
    log_term: int,
    index: int,
    want_index: int,
    want_reject: bool,
    want_hint: int,
    want_hint_term: int,
) -> None:
    s = new_storage([1, 2, 3], entries=entries_with_terms([1, 2]))
    s.set_hard_state(HardState(commit=1))
    r = new_test_raft(1, storage=s)
    r.become_follower(2, 2)
    r.step(Message(type=MT.APP, from_=2, to=1, term=2, log_term=log_term, index=index))
    (resp,) = r.read_messages()
    assert (resp.type, resp.from_, resp.to, resp.term) == (MT.APP_RESP, 1, 2, 2)
    assert (resp.index, resp.reject, resp.reject_hint, resp.log_term) == (
        want_index,
        want_reject,
        want_hint,
        want_hint_term,
    )


@pytest.mark.parametrize(
    ("index", "log_term", "sent", "want_log", "want_unstable"),
    [
        (2, 2, [Entry(3, 3)], [(1, 1), (2, 2), (3, 3)], [(3, 3)]),
        (1, 1, [Entry(3, 2), Entry(4, 3)], [(1, 1), (2, 3), (3, 4)], [(2, 3), (3, 4)]),
        (0, 0, [Entry(1, 1)], [(1, 1), (2, 2)], []),
        (0, 0, [Entry(3, 1)], [(1, 3)], [(1, 3)]),
    ],
)
def test_follower_deletes_conflicting_entries_and_appends_new_ones(
    index: int,
    log_term: int,
    sent: list[Entry],
    want_log: list[tuple[int, int]],
    want_unstable: list[tuple[int, int]],
) -> None:
    r = new_test_raft(1, storage=new_storage([1, 2, 3], entries=entries_with_terms([1, 2])))
    r.become_follower(2, 2)
    r.step(
        Message(
            type=MT.APP, from_=2, to=1, term=2, log_term=log_term, index=index, entries=tuple(sent)
        )
    )
    assert [(e.index, e.term) for e in r.raft_log.all_entries()] == want_log
    assert [(e.index, e.term) for e in r.raft_log.unstable_entries()] == want_unstable


FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]


@pytest.mark.parametrize(
    "follower_terms",
    [
        [1, 1, 1, 4, 4, 5, 5, 6, 6],  # (a) missing the last entry
        [1, 1, 1, 4],  # (b) missing many entries
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  # (c) one extra uncommitted entry
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  # (d) extra entries of a later term
        [1, 1, 1, 4, 4, 4, 4],  # (e) missing entries and extra term-4 entries
        [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  # (f) a long divergent tail of terms 2 and 3
    ],
    ids=list("abcdef"),
)
def test_leader_brings_each_figure_7_follower_log_in_line_with_its_own(
    follower_terms: list[int],
) -> None:
    ls = new_storage([1, 2, 3], entries=entries_with_terms(FIGURE_7_LEADER))
    ls.set_hard_state(HardState(term=8, commit=len(FIGURE_7_LEADER)))
    lead = new_test_raft(1, storage=ls)
    fs = new_storage([1, 2, 3], entries=entries_with_terms(follower_terms))
    fs.set_hard_state(HardState(term=7))
    follower = new_test_raft(2, storage=fs)
    # Follower (d) holds a newer log and refuses its vote; member 3 grants it.
    nt = Network(lead, follower, Blackhole())
    nt.send(hup(1))
    nt.send(Message(type=MT.VOTE_RESP, from_=3, to=1, term=9))
    nt.send(prop(1))
    assert (lead.state, lead.term) == (LEADER, 9)
    want = [*FIGURE_7_LEADER, 9, 9]
    assert terms_of(lead) == want
    assert terms_of(follower) == want
    assert follower.raft_log.committed == len(want)


# ------------------------------------------------------------- 5.4 safety


@pytest.mark.parametrize(
    ("log_terms", "want_term"),
    [([1], 2), ([1, 2], 3)],
)
def test_vote_request_carries_the_candidate_last_index_and_term(
    log_terms: list[int], want_term: int
) -> None:
    r = new_test_raft(1, peers=[1, 2, 3])
    r.step(
        Message(
            type=MT.APP,
            from_=2,
            to=1,
            term=want_term - 1,
            entries=tuple(entries_with_terms(log_terms)),
        )
    )
    r.read_messages()
    for _ in range(2 * r.election_timeout):
        r.tick()
    msgs = sorted(r.read_messages(), key=lambda m: m.to)
    assert [(m.type, m.to, m.term, m.index, m.log_term) for m in msgs] == [
        (MT.VOTE, 2, want_term, len(log_terms), log_terms[-1]),
        (MT.VOTE, 3, want_term, len(log_terms), log_terms[-1]),
    ]


@pytest.mark.parametrize(("acked", "want_commit"), [(1, 0), (2, 0), (3, 3)])
def test_leader_counts_replicas_only_for_entries_of_its_own_term(
    acked: int, want_commit: int
) -> None:
    s = new_storage([1, 2], entries=entries_with_terms([1, 2]))
    s.set_hard_state(HardState(term=2))
    r = new_test_raft(1, storage=s)
    elect(r)  # term 3, empty entry at index 3
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=3, index=acked))
    assert r.raft_log.committed == want_commit
