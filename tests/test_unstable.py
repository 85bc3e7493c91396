"""The unstable tail of the raft log: indexes, terms, persistence and truncation."""

from __future__ import annotations

import pytest

from log_fixtures import ents, snapshot_at
from multiraft.raft.types import Entry, Snapshot
from multiraft.raft.unstable import Unstable

SNAP_4_1 = snapshot_at(4, 1)


@pytest.mark.parametrize(
    ("entries", "offset", "snap", "want"),
    [
        (ents((5, 1)), 5, None, None),
        ([], 0, None, None),
        (ents((5, 1)), 5, SNAP_4_1, 5),
        ([], 5, SNAP_4_1, 5),
    ],
)
def test_maybe_first_index_is_known_only_with_a_snapshot(
    entries: list[Entry], offset: int, snap: Snapshot | None, want: int | None
) -> None:
    u = Unstable(offset=offset, entries=entries, snapshot=snap)
    assert u.maybe_first_index() == want


@pytest.mark.parametrize(
    ("entries", "offset", "snap", "want"),
    [
        (ents((5, 1)), 5, None, 5),
        (ents((5, 1)), 5, SNAP_4_1, 5),
        ([], 5, SNAP_4_1, 4),
        ([], 0, None, None),
    ],
)
def test_maybe_last_index_comes_from_entries_then_snapshot(
    entries: list[Entry], offset: int, snap: Snapshot | None, want: int | None
) -> None:
    u = Unstable(offset=offset, entries=entries, snapshot=snap)
    assert u.maybe_last_index() == want


@pytest.mark.parametrize(
    ("entries", "offset", "snap", "index", "want"),
    [
        # term from entries
        (ents((5, 1)), 5, None, 5, 1),
        (ents((5, 1)), 5, None, 6, None),
        (ents((5, 1)), 5, None, 4, None),
        (ents((5, 1)), 5, SNAP_4_1, 5, 1),
        (ents((5, 1)), 5, SNAP_4_1, 6, None),
        # term from the snapshot
        (ents((5, 1)), 5, SNAP_4_1, 4, 1),
        (ents((5, 1)), 5, SNAP_4_1, 3, None),
        ([], 5, SNAP_4_1, 5, None),
        ([], 5, SNAP_4_1, 4, 1),
        ([], 0, None, 5, None),
    ],
)
def test_maybe_term_answers_for_entries_and_snapshot_index_only(
    entries: list[Entry], offset: int, snap: Snapshot | None, index: int, want: int | None
) -> None:
    u = Unstable(offset=offset, entries=entries, snapshot=snap)
    assert u.maybe_term(index) == want


def test_restore_replaces_entries_and_moves_offset_past_snapshot() -> None:
    u = Unstable(offset=5, entries=ents((5, 1)), snapshot=SNAP_4_1)
    s = snapshot_at(6, 2)
    u.restore(s)
    assert (u.offset, u.entries, u.snapshot) == (7, (), s)


@pytest.mark.parametrize(
    ("entries", "offset", "snap", "index", "term", "want_offset", "want_len"),
    [
        ([], 0, None, 5, 1, 0, 0),
        # stable to the first entry
        (ents((5, 1)), 5, None, 5, 1, 6, 0),
        (ents((5, 1), (6, 1)), 5, None, 5, 1, 6, 1),
        # the entry at that index was replaced by a newer term: keep it
        (ents((6, 2)), 6, None, 6, 1, 6, 1),
        # index below the unstable entries
        (ents((5, 1)), 5, None, 4, 1, 5, 1),
        (ents((5, 1)), 5, None, 4, 2, 5, 1),
        # with a snapshot
        (ents((5, 1)), 5, SNAP_4_1, 5, 1, 6, 0),
        (ents((5, 1), (6, 1)), 5, SNAP_4_1, 5, 1, 6, 1),
        (ents((6, 2)), 6, snapshot_at(5, 1), 6, 1, 6, 1),
        # the snapshot's own index never stabilizes entries
        (ents((5, 1)), 5, SNAP_4_1, 4, 1, 5, 1),
        ([], 5, SNAP_4_1, 4, 1, 5, 0),
    ],
)
def test_stable_to_drops_the_persisted_prefix_only_on_matching_term(
    entries: list[Entry],
    offset: int,
    snap: Snapshot | None,
    index: int,
    term: int,
    want_offset: int,
    want_len: int,
) -> None:
    u = Unstable(offset=offset, entries=entries, snapshot=snap)
    u.stable_to(index, term)
    assert (u.offset, len(u.entries)) == (want_offset, want_len)
    assert u.snapshot == snap


def test_stable_to_does_not_mutate_a_list_handed_out_earlier() -> None:
    u = Unstable(offset=5, entries=ents((5, 1), (6, 1)))
    handed_out = u.entries
    u.stable_to(5, 1)
    assert handed_out == ents((5, 1), (6, 1))
    assert u.entries == ents((6, 1))


@pytest.mark.parametrize(("index", "want_snapshot"), [(3, SNAP_4_1), (4, None), (5, SNAP_4_1)])
def test_stable_snap_to_clears_only_the_matching_snapshot(
    index: int, want_snapshot: Snapshot | None
) -> None:
    u = Unstable(offset=5, snapshot=SNAP_4_1)
    u.stable_snap_to(index)
    assert u.snapshot == want_snapshot


@pytest.mark.parametrize(
    ("new", "want_offset", "want"),
    [
        # directly after the last entry
        ([(7, 1), (8, 1)], 5, [(5, 1), (6, 1), (7, 1), (8, 1)]),
        # replace everything
        ([(5, 2), (6, 2)], 5, [(5, 2), (6, 2)]),
        ([(4, 2), (5, 2), (6, 2)], 4, [(4, 2), (5, 2), (6, 2)]),
        # keep a prefix, truncate the rest
        ([(6, 2)], 5, [(5, 1), (6, 2)]),
        ([(7, 2), (8, 2)], 5, [(5, 1), (6, 1), (7, 2), (8, 2)]),
    ],
)
def test_truncate_and_append_cases(
    new: list[tuple[int, int]], want_offset: int, want: list[tuple[int, int]]
) -> None:
    u = Unstable(offset=5, entries=ents((5, 1), (6, 1), (7, 1)))
    u.truncate_and_append(ents(*new))
    assert (u.offset, list(u.entries)) == (want_offset, ents(*want))


def test_truncate_and_append_copies_a_tuple_of_entries() -> None:
    u = Unstable(offset=5)
    u.truncate_and_append(tuple(ents((5, 1), (6, 1))))
    u.truncate_and_append(ents((7, 1)))
    assert u.entries == ents((5, 1), (6, 1), (7, 1))


def test_slice_returns_a_copy_of_the_range() -> None:
    u = Unstable(offset=5, entries=ents((5, 1), (6, 1), (7, 2)))
    got = u.slice(6, 8)
    assert got == ents((6, 1), (7, 2))
    got.clear()
    assert len(u.entries) == 3
    assert u.slice(6, 6) == []


@pytest.mark.parametrize(("lo", "hi"), [(7, 6), (4, 6), (5, 9)])
def test_slice_out_of_bounds_is_a_caller_bug(lo: int, hi: int) -> None:
    u = Unstable(offset=5, entries=ents((5, 1), (6, 1), (7, 2)))
    with pytest.raises(AssertionError):
        u.slice(lo, hi)
