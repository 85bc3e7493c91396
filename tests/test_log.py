"""The raft log over MemoryStorage: appends, conflicts, commit/apply cursors, slices."""

from __future__ import annotations

import pytest

from log_fixtures import ents, run, snapshot_at
from multiraft.raft.errors import (
    CompactedError,
    SnapshotTemporarilyUnavailableError,
    UnavailableError,
)
from multiraft.raft.log import RaftLog, limit_size
from multiraft.raft.storage import NO_LIMIT
from multiraft.raft.types import Entry
from storage import MemoryStorage


def log_with(*pairs: tuple[int, int]) -> RaftLog:
    """A fresh log whose (unstable) entries are ``pairs``."""
    log = RaftLog(MemoryStorage())
    log.append(ents(*pairs))
    return log


def storage_with(snapshot_index: int, snapshot_term: int, entries: list[Entry]) -> MemoryStorage:
    s = MemoryStorage()
    if snapshot_index:
        s.apply_snapshot(snapshot_at(snapshot_index, snapshot_term))
    s.append(entries)
    return s


# -- construction -------------------------------------------------------------


def test_new_log_starts_committed_and_applied_at_the_last_compaction() -> None:
    s = storage_with(10, 3, run(11, 15, 3))
    log = RaftLog(s)
    assert (log.committed, log.applied, log.unstable.offset) == (10, 10, 16)
    assert (log.first_index(), log.last_index(), log.last_term()) == (11, 15, 3)


def test_log_restored_from_storage_snapshot_has_no_entries() -> None:
    log = RaftLog(storage_with(1000, 1000, []))
    assert log.all_entries() == []
    assert (log.first_index(), log.committed, log.unstable.offset) == (1001, 1000, 1001)
    assert log.term(1000) == 1000


# -- find_conflict / append / maybe_append --------------------------------------


@pytest.mark.parametrize(
    ("new", "want"),
    [
        ([], 0),
        ([(1, 1), (2, 2), (3, 3)], 0),
        ([(2, 2), (3, 3)], 0),
        ([(3, 3)], 0),
        ([(1, 1), (2, 2), (3, 3), (4, 4), (5, 4)], 4),
        ([(2, 2), (3, 3), (4, 4), (5, 4)], 4),
        ([(3, 3), (4, 4), (5, 4)], 4),
        ([(4, 4), (5, 4)], 4),
        ([(1, 4), (2, 4)], 1),
        ([(2, 1), (3, 4), (4, 4)], 2),
        ([(3, 1), (4, 2), (5, 4), (6, 4)], 3),
    ],
)
def test_find_conflict_returns_first_new_or_conflicting_index(
    new: list[tuple[int, int]], want: int
) -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    assert log.find_conflict(ents(*new)) == want


@pytest.mark.parametrize(
    ("new", "want_last", "want_log", "want_offset"),
    [
        ([], 2, [(1, 1), (2, 2)], 3),
        ([(3, 2)], 3, [(1, 1), (2, 2), (3, 2)], 3),
        # conflicts with index 1: the unstable part now starts below storage's end
        ([(1, 2)], 1, [(1, 2)], 1),
        ([(2, 3), (3, 3)], 3, [(1, 1), (2, 3), (3, 3)], 2),
    ],
)
def test_append_replaces_the_suffix_and_returns_last_index(
    new: list[tuple[int, int]],
    want_last: int,
    want_log: list[tuple[int, int]],
    want_offset: int,
) -> None:
    log = RaftLog(storage_with(0, 0, ents((1, 1), (2, 2))))
    assert log.append(ents(*new)) == want_last
    assert log.entries(1) == ents(*want_log)
    assert log.unstable.offset == want_offset


def test_append_below_commit_is_a_caller_bug() -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    log.commit_to(2)
    with pytest.raises(AssertionError):
        log.append(ents((2, 4)))
    assert log.all_entries() == ents((1, 1), (2, 2), (3, 3))


# Log (1,1) (2,2) (3,3), committed 1.
@pytest.mark.parametrize(
    ("log_term", "index", "committed", "new", "want_last", "want_commit"),
    [
        # previous entry does not match: term differs, index past the end
        (2, 3, 3, [(4, 4)], None, 1),
        (3, 4, 3, [(5, 4)], None, 1),
        # matches the last entry
        (3, 3, 3, [], 3, 3),
        (3, 3, 4, [], 3, 3),  # commit no higher than the last new index
        (3, 3, 2, [], 3, 2),
        (3, 3, 0, [], 3, 1),  # commit never decreases
        (0, 0, 3, [], 0, 1),
        (3, 3, 3, [(4, 4)], 4, 3),
        (3, 3, 4, [(4, 4)], 4, 4),
        (3, 3, 5, [(4, 4)], 4, 4),
        (3, 3, 5, [(4, 4), (5, 4)], 5, 5),
        # matches an entry in the middle: the suffix is replaced
        (2, 2, 3, [(3, 4)], 3, 3),
        (1, 1, 3, [(2, 4)], 2, 2),
        (1, 1, 3, [(2, 4), (3, 4)], 3, 3),
    ],
)
def test_maybe_append_cases(
    log_term: int,
    index: int,
    committed: int,
    new: list[tuple[int, int]],
    want_last: int | None,
    want_commit: int,
) -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    log.committed = 1
    assert log.maybe_append(index, log_term, committed, ents(*new)) == want_last
    assert log.committed == want_commit
    if want_last is not None and new:
        assert log.slice(want_last - len(new) + 1, want_last + 1) == ents(*new)
        assert log.last_index() == want_last


def test_maybe_append_conflicting_with_a_committed_entry_is_a_caller_bug() -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    log.committed = 1
    with pytest.raises(AssertionError, match="conflict with committed entry"):
        log.maybe_append(0, 0, 3, ents((1, 4)))


def test_maybe_append_keeps_entries_already_present() -> None:
    log = RaftLog(storage_with(0, 0, ents((1, 1), (2, 2), (3, 3))))
    log.append(ents((4, 3)))
    assert log.maybe_append(1, 1, 0, ents((2, 2), (3, 3))) == 3
    # Nothing was re-appended: the unstable part is as before and the suffix is kept.
    assert (log.unstable.offset, log.unstable_entries()) == (4, ents((4, 3)))
    assert log.last_index() == 4


def test_maybe_append_accepts_a_tuple_of_entries() -> None:
    log = log_with((1, 1))
    assert log.maybe_append(1, 1, 2, tuple(ents((2, 1), (3, 2)))) == 3
    assert (log.committed, log.last_index(), log.last_term()) == (2, 3, 2)


# -- find_conflict_by_term -------------------------------------------------------

# Snapshot at (10, 3); 11..14 in storage, 15..18 unstable.
DIVERGENT_TERMS = [3, 3, 4, 4, 4, 6, 6, 7]


def divergent_log() -> RaftLog:
    entries = [Entry(term=t, index=11 + i) for i, t in enumerate(DIVERGENT_TERMS)]
    log = RaftLog(storage_with(10, 3, entries[:4]))
    log.append(entries[4:])
    return log


@pytest.mark.parametrize(
    ("index", "term", "want"),
    [
        (18, 7, (18, 7)),
        (18, 8, (18, 7)),
        (18, 6, (17, 6)),
        (18, 5, (15, 4)),
        (18, 4, (15, 4)),
        (14, 4, (14, 4)),
        (18, 3, (12, 3)),
        (13, 3, (12, 3)),
        (10, 3, (10, 3)),
        # every known term is higher: the first unknown index may still match
        (18, 2, (9, 0)),
        # past the end the term is unknown, so the index itself is the guess
        (25, 7, (25, 0)),
        (25, 1, (25, 0)),
        (0, 5, (0, 0)),
    ],
)
def test_find_conflict_by_term_on_a_divergent_log(
    index: int, term: int, want: tuple[int, int]
) -> None:
    assert divergent_log().find_conflict_by_term(index, term) == want


def test_find_conflict_by_term_on_an_empty_log_reaches_zero() -> None:
    log = RaftLog(MemoryStorage())
    assert log.find_conflict_by_term(0, 0) == (0, 0)
    assert log.find_conflict_by_term(3, 0) == (3, 0)


# -- up-to-date, commit, apply ---------------------------------------------------------


@pytest.mark.parametrize(
    ("lasti", "term", "want"),
    [
        (2, 4, True),
        (3, 4, True),
        (4, 4, True),
        (2, 2, False),
        (3, 2, False),
        (4, 2, False),
        (2, 3, False),
        (3, 3, True),
        (4, 3, True),
    ],
)
def test_is_up_to_date_compares_last_term_then_last_index(
    lasti: int, term: int, want: bool
) -> None:
    assert log_with((1, 1), (2, 2), (3, 3)).is_up_to_date(lasti, term) is want


@pytest.mark.parametrize(("tocommit", "want"), [(3, 3), (1, 2)])
def test_commit_to_never_decreases(tocommit: int, want: int) -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    log.committed = 2
    log.commit_to(tocommit)
    assert log.committed == want


def test_commit_to_past_last_index_is_a_caller_bug() -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    with pytest.raises(AssertionError, match="out of range"):
        log.commit_to(4)
    assert log.committed == 0


@pytest.mark.parametrize(
    ("max_index", "term", "want_ok", "want_commit"),
    [
        (3, 3, True, 3),
        (3, 2, False, 1),
        (2, 2, True, 2),
        (1, 1, False, 1),  # not beyond the commit index
        (4, 3, False, 1),  # past the end: unknown term
        (4, 0, False, 1),  # term 0 never matches
    ],
)
def test_maybe_commit_only_commits_an_entry_of_the_given_term(
    max_index: int, term: int, want_ok: bool, want_commit: int
) -> None:
    log = log_with((1, 1), (2, 2), (3, 3))
    log.committed = 1
    assert log.maybe_commit(max_index, term) is want_ok
    assert log.committed == want_commit


def test_maybe_commit_of_a_compacted_index_does_not_commit() -> None:
    s = storage_with(0, 0, run(1, 5, 1))
    log = RaftLog(s)
    s.compact(4)
    assert log.maybe_commit(2, 1) is False
    assert log.committed == 0


@pytest.mark.parametrize(
    ("applied", "ok"), [(0, True), (1, False), (2, True), (3, True), (4, False)]
)
def test_applied_to_must_stay_within_applied_and_committed(applied: int, ok: bool) -> None:
    log = log_with((1, 1), (2, 2), (3, 3), (4, 4))
    log.commit_to(3)
    log.applied_to(2)
    if ok:
        log.applied_to(applied)
        assert log.applied == max(applied, 2)
    else:
        with pytest.raises(AssertionError, match="out of range"):
            log.applied_to(applied)
        assert log.applied == 2


# -- committed entries to apply ---------------------------------------------------------


def committed_log(max_applying_size: int = NO_LIMIT) -> RaftLog:
    """Snapshot at (3, 1); entries 4..6 of term 1 unstable; committed 5."""
    log = RaftLog(storage_with(3, 1, []), max_applying_size=max_applying_size)
    log.append(run(4, 6, 1))
    assert log.maybe_commit(5, 1)
    return log


@pytest.mark.parametrize(
    ("applied", "want_has", "want"),
    [(0, True, [4, 5]), (3, True, [4, 5]), (4, True, [5]), (5, False, [])],
)
def test_next_committed_ents_are_between_applied_and_committed(
    applied: int, want_has: bool, want: list[int]
) -> None:
    log = committed_log()
    log.applied_to(applied)
    assert log.has_next_committed_ents() is want_has
    assert [e.index for e in log.next_committed_ents()] == want


def test_next_committed_ents_respect_the_size_cap_but_return_at_least_one() -> None:
    s = storage_with(0, 0, [Entry(1, i, data=b"abcd") for i in range(1, 4)])  # 20 bytes each
    log = RaftLog(s, max_applying_size=45)
    log.append([Entry(1, i, data=b"abcd") for i in range(4, 7)])
    log.commit_to(6)
    assert [e.index for e in log.next_committed_ents()] == [1, 2]
    log.applied_to(2)
    # Crosses from storage into the unstable part.
    assert [e.index for e in log.next_committed_ents()] == [3, 4]
    log.applied_to(4)
    assert [e.index for e in log.next_committed_ents()] == [5, 6]

    tiny = RaftLog(storage_with(0, 0, [Entry(1, 1, data=b"x" * 100), Entry(1, 2)]))
    tiny.max_applying_size = 10
    tiny.commit_to(2)
    assert [e.index for e in tiny.next_committed_ents()] == [1]


def test_unstable_entries_are_handed_out_and_then_stabilized() -> None:
    s = storage_with(0, 0, ents((1, 1)))
    log = RaftLog(s)
    log.append(ents((2, 2)))
    got = log.unstable_entries()
    assert got == ents((2, 2))
    log.stable_to(2, 2)
    assert (log.unstable_entries(), log.unstable.offset) == ([], 3)
    assert got == ents((2, 2))


def test_unstable_entries_copy_is_not_changed_by_later_appends() -> None:
    log = log_with((1, 1))
    got = log.unstable_entries()
    log.append(ents((2, 1)))
    assert got == ents((1, 1))


@pytest.mark.parametrize(
    ("index", "term", "want_offset"), [(1, 1, 2), (2, 2, 3), (2, 1, 1), (3, 1, 1)]
)
def test_stable_to_moves_offset_only_on_matching_term(
    index: int, term: int, want_offset: int
) -> None:
    log = log_with((1, 1), (2, 2))
    log.stable_to(index, term)
    assert log.unstable.offset == want_offset


@pytest.mark.parametrize(
    ("index", "term", "new", "want_offset"),
    [
        (6, 2, [], 6),
        (5, 2, [], 6),
        (4, 2, [], 6),
        (6, 3, [], 6),
        (5, 3, [], 6),
        (4, 3, [], 6),
        (6, 2, [(6, 2)], 7),
        (5, 2, [(6, 2)], 6),
        (4, 2, [(6, 2)], 6),
        (6, 3, [(6, 2)], 6),
        (5, 3, [(6, 2)], 6),
        (4, 3, [(6, 2)], 6),
    ],
)
def test_stable_to_after_a_storage_snapshot(
    index: int, term: int, new: list[tuple[int, int]], want_offset: int
) -> None:
    log = RaftLog(storage_with(5, 2, []))
    log.append(ents(*new))
    log.stable_to(index, term)
    assert log.unstable.offset == want_offset


# -- compaction -----------------------------------------------------------------------


def test_log_still_works_after_storage_compacts_under_it() -> None:
    s = storage_with(0, 0, [Entry(term=i, index=i) for i in range(1, 751)])
    log = RaftLog(s)
    for i in range(751, 1001):
        log.append([Entry(term=i, index=i)])
    assert log.maybe_commit(1000, 1000)
    log.applied_to(log.committed)
    s.compact(500)

    assert log.last_index() == 1000
    assert all(log.term(j) == j for j in range(500, 1001))
    assert all(log.match_term(j, j) for j in range(500, 1001))
    unstable = log.unstable_entries()
    assert (len(unstable), unstable[0].index) == (250, 751)
    assert log.append([Entry(term=1001, index=1001)]) == 1001
    assert log.entries(1001) == [Entry(term=1001, index=1001)]
    with pytest.raises(CompactedError):
        log.term(498)  # before the dummy entry
    assert log.zero_term_on_compacted(498) == 0
    with pytest.raises(CompactedError):
        log.slice(499, 501)


@pytest.mark.parametrize(
    ("compactions", "want_left"),
    [([300, 500, 800, 900], [700, 500, 200, 100])],
)
def test_all_entries_shrink_with_each_compaction(
    compactions: list[int], want_left: list[int]
) -> None:
    s = storage_with(0, 0, run(1, 1000, 1))
    log = RaftLog(s)
    assert log.maybe_commit(1000, 1)
    log.applied_to(1000)
    for index, left in zip(compactions, want_left, strict=True):
        s.compact(index)
        assert len(log.all_entries()) == left


# -- terms -----------------------------------------------------------------------------


def test_term_raises_outside_the_dummy_to_last_range() -> None:
    log = RaftLog(storage_with(100, 1, []))
    for i in range(1, 100):
        log.append([Entry(term=i, index=100 + i)])
    assert [log.term(i) for i in (100, 150, 199)] == [1, 50, 99]
    with pytest.raises(CompactedError):
        log.term(99)
    with pytest.raises(UnavailableError):
        log.term(200)
    assert [log.zero_term_on_compacted(i) for i in (99, 200)] == [0, 0]
    # An append claiming to follow an entry we do not have must not match.
    assert not log.match_term(200, 0)
    assert log.maybe_append(10**15, 0, 10**15, []) is None


def test_term_with_an_unstable_snapshot_ahead_of_storage() -> None:
    log = RaftLog(storage_with(100, 1, []))
    log.restore(snapshot_at(105, 1))
    assert log.term(105) == 1
    for i in (100, 101, 104):
        with pytest.raises(CompactedError):
            log.term(i)
    assert (log.first_index(), log.last_index(), log.committed) == (106, 105, 105)


class RacingCompactionStorage(MemoryStorage):
    """A storage compacted by someone else between the log's bounds check and its read."""

    def __init__(self, compacted_below: int) -> None:
        super().__init__()
        self.compacted_below = compacted_below

    def term(self, i: int) -> int:
        if i < self.compacted_below:
            raise CompactedError(f"index {i} compacted")
        return super().term(i)


def test_term_passes_storage_errors_through_and_helpers_absorb_them() -> None:
    s = RacingCompactionStorage(compacted_below=3)
    s.append(run(1, 5, 2))
    log = RaftLog(s)
    with pytest.raises(CompactedError):
        log.term(2)
    assert log.term(3) == 2
    assert log.match_term(2, 2) is False
    assert log.zero_term_on_compacted(2) == 0
    assert log.find_conflict_by_term(5, 1) == (2, 0)


def test_zero_term_on_compacted_treats_other_storage_errors_as_bugs() -> None:
    class BrokenStorage(MemoryStorage):
        def term(self, i: int) -> int:
            raise SnapshotTemporarilyUnavailableError("not an out-of-bounds error")

    s = BrokenStorage()
    s.append(run(1, 2, 1))
    with pytest.raises(AssertionError):
        RaftLog(s).zero_term_on_compacted(1)


# -- slices ----------------------------------------------------------------------------

OFFSET, NUM = 100, 100
LAST, HALF = OFFSET + NUM, OFFSET + NUM // 2


def half_stable_log() -> RaftLog:
    """Snapshot at 100; entries 101..149 in storage, 150..199 unstable; term == index."""
    log = RaftLog(storage_with(OFFSET, 0, [Entry(OFFSET + i, OFFSET + i) for i in range(1, 50)]))
    log.append([Entry(OFFSET + i, OFFSET + i) for i in range(50, NUM)])
    return log


def idx(lo: int, hi: int) -> list[Entry]:
    return [Entry(term=i, index=i) for i in range(lo, hi)]


@pytest.mark.parametrize(
    ("lo", "hi", "max_size", "want"),
    [
        (HALF - 1, HALF + 1, NO_LIMIT, idx(HALF - 1, HALF + 1)),
        (HALF, HALF + 1, NO_LIMIT, idx(HALF, HALF + 1)),
        (LAST - 1, LAST, NO_LIMIT, idx(LAST - 1, LAST)),
        (OFFSET + 1, LAST, NO_LIMIT, idx(OFFSET + 1, LAST)),
        (HALF, HALF, NO_LIMIT, []),
        # size limits: always at least one entry, then stop before exceeding
        (HALF - 1, HALF + 1, 0, idx(HALF - 1, HALF)),
        (HALF - 1, HALF + 1, 16 + 1, idx(HALF - 1, HALF)),
        (HALF - 2, HALF + 1, 16 + 1, idx(HALF - 2, HALF - 1)),
        (HALF - 1, HALF + 1, 16 * 2, idx(HALF - 1, HALF + 1)),
        (HALF - 1, HALF + 2, 16 * 3, idx(HALF - 1, HALF + 2)),
        (HALF, HALF + 2, 16, idx(HALF, HALF + 1)),
        (HALF, HALF + 2, 16 * 2, idx(HALF, HALF + 2)),
        (HALF - 3, HALF + 3, 16 * 5 - 1, idx(HALF - 3, HALF + 1)),
    ],
)
def test_slice_combines_storage_and_unstable_within_size(
    lo: int, hi: int, max_size: int, want: list[Entry]
) -> None:
    assert half_stable_log().slice(lo, hi, max_size) == want


@pytest.mark.parametrize(("lo", "hi"), [(OFFSET - 1, OFFSET + 1), (OFFSET, OFFSET + 1)])
def test_slice_below_first_index_raises_compacted(lo: int, hi: int) -> None:
    with pytest.raises(CompactedError):
        half_stable_log().slice(lo, hi)


@pytest.mark.parametrize(("lo", "hi"), [(LAST, LAST + 1), (LAST + 1, LAST + 1), (HALF, HALF - 1)])
def test_slice_past_the_end_or_inverted_is_a_caller_bug(lo: int, hi: int) -> None:
    with pytest.raises(AssertionError):
        half_stable_log().slice(lo, hi)


@pytest.mark.parametrize(
    ("lo", "hi", "outcome"),
    [
        (OFFSET - 1, OFFSET + 2, "compacted"),
        (OFFSET, OFFSET + 2, "compacted"),
        (OFFSET + 1, OFFSET + 1, "ok"),
        (HALF, HALF, "ok"),
        (LAST - 1, LAST - 1, "ok"),
        (LAST, LAST, "ok"),
        (LAST, LAST + 1, "bug"),
        (LAST + 1, LAST + 1, "bug"),
    ],
)
def test_must_check_out_of_bounds(lo: int, hi: int, outcome: str) -> None:
    log = half_stable_log()
    if outcome == "compacted":
        with pytest.raises(CompactedError):
            log.must_check_out_of_bounds(lo, hi)
    elif outcome == "bug":
        with pytest.raises(AssertionError):
            log.must_check_out_of_bounds(lo, hi)
    else:
        log.must_check_out_of_bounds(lo, hi)


def test_entries_past_the_last_index_are_empty() -> None:
    log = half_stable_log()
    assert log.entries(LAST) == []
    assert log.entries(LAST - 1) == idx(LAST - 1, LAST)
    assert log.entries(HALF, 16 * 2) == idx(HALF, HALF + 2)


def test_slice_reads_storage_below_a_shadowing_unstable_suffix() -> None:
    log = RaftLog(storage_with(0, 0, run(1, 5, 1)))
    log.append(ents((3, 2), (4, 2)))
    assert log.all_entries() == ents((1, 1), (2, 1), (3, 2), (4, 2))
    assert log.slice(1, 3) == ents((1, 1), (2, 1))
    assert log.last_index() == 4


@pytest.mark.parametrize(
    ("sizes", "max_size", "want_len"),
    [
        ([], 0, 0),
        ([16], 0, 1),
        ([16, 16], 0, 1),
        ([16, 16], 31, 1),
        ([16, 16], 32, 2),
        ([100, 16], 50, 1),
        ([16, 16, 16], 47, 2),
        ([16, 16, 16], NO_LIMIT, 3),
    ],
)
def test_limit_size_keeps_at_least_one_entry(
    sizes: list[int], max_size: int, want_len: int
) -> None:
    entries = [Entry(1, i + 1, data=b"x" * (n - 16)) for i, n in enumerate(sizes)]
    assert limit_size(entries, max_size) == entries[:want_len]


# -- snapshots ---------------------------------------------------------------------------


def test_restore_sets_commit_and_makes_the_snapshot_pending() -> None:
    log = log_with((1, 1), (2, 2))
    log.commit_to(1)
    snap = snapshot_at(10, 3)
    assert log.has_pending_snapshot() is False
    log.restore(snap)
    assert (log.committed, log.applied, log.first_index(), log.last_index()) == (10, 0, 11, 10)
    assert log.has_pending_snapshot() is True
    assert log.snapshot() == snap
    assert log.unstable_entries() == []
    assert log.has_next_committed_ents() is False
    log.stable_snap_to(10)
    assert log.has_pending_snapshot() is False


def test_snapshot_falls_back_to_storage() -> None:
    s = storage_with(4, 2, [])
    log = RaftLog(s)
    assert log.snapshot() == snapshot_at(4, 2)
    log.restore(snapshot_at(7, 3))
    assert log.snapshot() == snapshot_at(7, 3)


def test_append_after_restore_extends_the_snapshot() -> None:
    log = RaftLog(MemoryStorage())
    log.restore(snapshot_at(10, 3))
    assert log.maybe_append(10, 3, 12, ents((11, 3), (12, 4))) == 12
    assert (log.committed, log.last_term(), log.all_entries()) == (12, 4, ents((11, 3), (12, 4)))
