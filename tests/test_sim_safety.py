"""The safety checker on hand-fed frames, durable writes and applies: each property fires."""

from __future__ import annotations

import random

from multiraft.frames import Frame, GroupMessage, HeartbeatRecord
from multiraft.ports import GroupWrite, WriteBatch
from multiraft.proposals import encode_header
from multiraft.raft.types import Entry, HardState, Message, MessageType
from multiraft.testing.safety import SafetyChecker
from multiraft.testing.sim_engine import DiskModel, SimLogEngine
from multiraft.testing.trace import EventTrace

G = 5


def setup(nodes: int = 3) -> tuple[SafetyChecker, dict[int, SimLogEngine]]:
    checker = SafetyChecker(EventTrace())
    engines = {}
    for i in range(1, nodes + 1):
        engines[i] = checker.engines[i] = SimLogEngine(i, DiskModel(random.Random(i)), checker)
    return checker, engines


def persist(
    engine: SimLogEngine,
    entries: list[tuple[int, int, bytes]],
    term: int = 1,
    commit: int | None = None,
) -> None:
    """Make ``(index, term, data)`` entries durable, with a hard state when ``commit`` is given."""
    ents = [Entry(t, i, data=d) for i, t, d in entries]
    hs = None if commit is None else HardState(term, 0, commit)
    engine.write(WriteBatch([GroupWrite(G, ents, hs)]))


def append_from(src: int, term: int) -> Frame:
    return Frame(src, 9, [GroupMessage(G, Message(MessageType.APP, to=9, from_=src, term=term))])


def kinds(checker: SafetyChecker) -> list[str]:
    return [v.kind for v in checker.violations]


def test_two_nodes_sending_leader_messages_in_one_term_violate_election_safety() -> None:
    checker, _ = setup()
    checker.on_frame(1, 2, append_from(1, 3))
    checker.on_frame(1, 3, append_from(1, 3))
    assert checker.violations == []
    assert checker.leaders == {(G, 3): 1}
    assert checker.current_leader == {G: (3, 1)}
    heartbeat = Frame(2, 1, heartbeats=[HeartbeatRecord(G, 2, 1, 3, 0)])
    checker.on_frame(2, 1, heartbeat)
    assert kinds(checker) == ["election safety"]
    assert checker.violations[0].detail == "nodes 1 and 2 both lead term 3"
    assert checker.violations[0].group == G


def test_heartbeat_responses_and_votes_do_not_name_a_leader() -> None:
    checker, _ = setup()
    vote = Message(MessageType.VOTE, to=1, from_=2, term=4)
    checker.on_frame(2, 1, Frame(2, 1, [GroupMessage(G, vote)]))
    checker.on_frame(2, 1, Frame(2, 1, heartbeat_responses=[HeartbeatRecord(G, 2, 1, 4, 0)]))
    assert checker.leaders == {}


def test_same_index_and_term_with_different_data_violates_log_matching() -> None:
    checker, e = setup()
    persist(e[1], [(1, 1, b"a"), (2, 2, b"b")])
    persist(e[2], [(1, 1, b"a"), (2, 2, b"b")])
    assert checker.violations == []
    persist(e[3], [(1, 1, b"a"), (2, 2, b"OTHER")])
    assert kinds(checker) == ["log matching"]
    assert "index 2 term 2" in checker.violations[0].detail


def test_same_entry_after_a_different_previous_term_violates_log_matching() -> None:
    checker, e = setup()
    persist(e[1], [(1, 1, b"a"), (2, 3, b"c")])
    persist(e[2], [(1, 2, b"x"), (2, 3, b"c")])
    assert kinds(checker) == ["log matching"]
    assert "after term 2" in checker.violations[0].detail


def test_committing_a_different_entry_at_a_committed_index_is_a_violation() -> None:
    checker, e = setup()
    persist(e[1], [(1, 1, b"a")], term=1, commit=1)
    assert checker.committed[G] == {1: (1, Entry(1, 1).type, b"a", 1)}
    # A stale replica may hold another entry there: not committed there, no violation.
    persist(e[2], [(1, 2, b"b")], term=2)
    assert checker.violations == []
    persist(e[2], [], term=2, commit=1)
    assert kinds(checker) == ["committed entry changed"]


def test_overwriting_an_entry_the_replica_itself_committed_is_a_violation() -> None:
    checker, e = setup()
    persist(e[1], [(1, 1, b"a"), (2, 1, b"b")], term=1, commit=2)
    persist(e[1], [(2, 2, b"z")], term=2)
    assert kinds(checker) == ["committed entry changed"]
    assert "node 1 persisted an entry of term 2 at index 2" in checker.violations[0].detail


def test_durable_commit_index_moving_back_is_a_lost_commit() -> None:
    checker, e = setup()
    persist(e[1], [(1, 1, b"a"), (2, 1, b"b")], term=1, commit=2)
    persist(e[1], [], term=1, commit=1)
    assert kinds(checker) == ["committed entry lost"]


def test_new_leader_lacking_an_entry_committed_before_its_term_violates_completeness() -> None:
    checker, e = setup()
    persist(e[1], [(1, 1, b"a"), (2, 1, b"b")], term=1, commit=2)
    persist(e[2], [(1, 1, b"a")], term=1)
    persist(e[3], [(1, 1, b"a"), (2, 1, b"b")], term=1)
    checker.on_frame(3, 1, append_from(3, 2))  # holds index 2: fine
    assert checker.violations == []
    checker.on_frame(2, 1, append_from(2, 3))  # lacks index 2
    assert kinds(checker) == ["leader completeness"]
    assert checker.violations[0].detail == (
        "node 2 leads term 3 but holds term None at index 2, where an entry of term 1 "
        "was committed before term 3"
    )


def test_entry_first_seen_committed_in_a_later_term_does_not_bind_an_earlier_leader() -> None:
    checker, e = setup()
    # Index 2 was first seen committed by a replica already in term 5.
    persist(e[1], [(1, 1, b"a"), (2, 1, b"b")], term=5, commit=2)
    persist(e[2], [(1, 1, b"a")], term=1)
    checker.on_frame(2, 1, append_from(2, 4))
    assert checker.violations == []


def test_apply_checks_commit_command_and_every_replicas_chain() -> None:
    checker, e = setup()
    data = encode_header(1, 1) + b"cmd"
    persist(e[1], [(1, 1, data)], term=1, commit=1)
    persist(e[2], [(1, 1, data)], term=1, commit=1)
    checker.on_apply(1, G, 1, b"cmd", b"chain-1")
    checker.on_apply(2, G, 1, b"cmd", b"chain-1")
    assert checker.violations == []
    assert checker.chain_at(G, 1) == b"chain-1"
    # Applied before any durable commit covers index 2: checked once one does.
    checker.on_apply(3, G, 2, b"early", b"chain-2")
    assert checker.violations == []
    checker.on_apply(2, G, 1, b"other", b"chain-1")
    checker.on_apply(2, G, 1, b"cmd", b"chain-X")
    checker.on_apply_out_of_order(2, G, 1, 1)
    persist(e[1], [(2, 1, encode_header(1, 2) + b"committed")], term=1, commit=2)
    assert kinds(checker) == ["state machine safety"] * 4
    details = [v.detail for v in checker.violations]
    assert details[0] == "node 2 applied at index 1 a command other than the committed one"
    assert "different sequence of commands up to index 1" in details[1]
    assert details[2] == "node 2 applied index 1 after having applied 1"
    assert details[3] == (
        "node 3 applied at index 2 a command other than the one committed there later"
    )


def test_violations_stop_being_recorded_past_the_limit_and_call_the_hook() -> None:
    checker, _ = setup()
    checker.max_violations = 2
    seen: list[str] = []
    checker.on_violation = lambda v: seen.append(v.kind)
    for _ in range(5):
        checker.violation("liveness", "x")
    assert len(checker.violations) == 2
    assert seen == ["liveness", "liveness"]
