"""The memory storage keeps no per-group copy of values equal between groups."""

from __future__ import annotations

import sys

from multiraft.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from storage import MemoryStorage


def _snap(index: int, term: int) -> Snapshot:
    return Snapshot(SnapshotMetadata(ConfState(voters=(1, 2, 3)), index, term), b"sm")


def test_logs_starting_from_equal_snapshots_share_their_dummy_entry() -> None:
    a, b, c = MemoryStorage(), MemoryStorage(), MemoryStorage()
    a.apply_snapshot(_snap(3, 1))
    b.apply_snapshot(_snap(3, 1))
    c.apply_snapshot(_snap(4, 1))
    assert a._ents[0] is b._ents[0] and a._ents[0] == Entry(term=1, index=3)
    assert c._ents[0] == Entry(term=1, index=4) and c._ents[0] is not a._ents[0]
    assert (a.first_index(), a.last_index(), a.term(3)) == (4, 3, 1)


def test_compacted_logs_with_equal_first_entries_share_their_dummy_entry() -> None:
    a, b = MemoryStorage(), MemoryStorage()
    for s in (a, b):
        s.append([Entry(1, 1), Entry(1, 2), Entry(2, 3)])
        s.compact(2)
    assert a._ents[0] is b._ents[0] == Entry(term=1, index=2)
    assert (a.first_index(), a.last_index(), a.term(3)) == (3, 3, 2)


def test_equal_hard_states_are_stored_as_one_instance() -> None:
    a, b = MemoryStorage(), MemoryStorage()
    a.set_hard_state(HardState(term=5, vote=2, commit=9))
    b.set_hard_state(HardState(term=5, vote=2, commit=9))
    assert a.initial_state()[0] is b.initial_state()[0] == HardState(5, 2, 9)
    b.set_hard_state(HardState(term=5, vote=2, commit=10))
    assert b.initial_state()[0] == HardState(5, 2, 10) and a.initial_state()[0].commit == 9


def test_a_short_log_is_kept_at_its_exact_size_and_a_long_one_grows_in_place() -> None:
    s = MemoryStorage()
    s.apply_snapshot(_snap(3, 1))
    s.append([Entry(2, 4)])
    assert sys.getsizeof(s._ents) == sys.getsizeof([None, None])
    s.append([Entry(2, 5), Entry(2, 6)])
    assert sys.getsizeof(s._ents) == sys.getsizeof([None] * 4)
    # Replacing a suffix of a short log keeps what came before it.
    s.append([Entry(3, 5)])
    assert [(e.term, e.index) for e in s.entries(4, 6)] == [(2, 4), (3, 5)]
    s.append([Entry(3, i) for i in range(6, 12)])
    assert (len(s._ents), s.last_index(), s.term(11)) == (9, 11, 3)
    grown = s._ents
    s.append([Entry(3, 12)])
    assert s._ents is grown and s.last_index() == 12
    s.append([Entry(4, 12)])
    assert s._ents is grown and (s.last_index(), s.term(11), s.term(12)) == (12, 3, 4)
    # Cut back to a short log, it is rebuilt at its exact size again.
    s.append([Entry(5, 6)])
    assert s.last_index() == 6 and sys.getsizeof(s._ents) == sys.getsizeof([None] * 4)


def test_equal_short_logs_without_command_data_are_one_list() -> None:
    a, b = MemoryStorage(), MemoryStorage()
    for s in (a, b):
        s.apply_snapshot(_snap(3, 1))
        s.append([Entry(2, 4)])  # a new leader's empty entry
    assert a._ents is b._ents and [(e.term, e.index) for e in a._ents] == [(1, 3), (2, 4)]
    # Writing one replaces its list: the other keeps its log.
    b.append([Entry(2, 5, data=b"cmd")])
    assert (a.last_index(), b.last_index(), b.entries(5, 6)[0].data) == (4, 5, b"cmd")
    assert a._ents is not b._ents and len(a._ents) == 2


def test_short_logs_with_command_data_are_not_shared() -> None:
    a, b = MemoryStorage(), MemoryStorage()
    for s in (a, b):
        s.append([Entry(1, 1, data=b"x")])
    assert a._ents == b._ents and a._ents is not b._ents


def test_a_shared_short_log_grown_long_is_copied_not_changed_in_place() -> None:
    a, b = MemoryStorage(), MemoryStorage()
    for s in (a, b):
        s.append([Entry(1, i) for i in range(1, 6)])
    shared = a._ents
    assert b._ents is shared and len(shared) == 6
    a.append([Entry(1, i) for i in range(6, 12)])
    assert (len(shared), b.last_index(), a.last_index()) == (6, 5, 11)
    assert a._ents is not shared


def test_a_log_compacted_down_to_a_short_one_is_shared() -> None:
    a, b = MemoryStorage(), MemoryStorage()
    for s in (a, b):
        s.append([Entry(1, i) for i in range(1, 13)])
        s.compact(10)
    assert a._ents is b._ents and (a.first_index(), a.last_index(), a.term(12)) == (11, 12, 1)
    a.compact(11)
    assert (b.first_index(), a.first_index()) == (11, 12)
