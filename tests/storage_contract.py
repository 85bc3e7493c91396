"""The contract every raft log storage keeps (etcd ``MemoryStorage`` semantics).

Reuse it for any adapter: subclass :class:`StorageContract` in a ``test_*``
module and give the class a ``storage_factory`` fixture returning a callable
``make(entries, snapshot=None) -> WritableStorage``::

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage_factory(self) -> StorageFactory:
            return make_my_storage

``make(entries, snapshot)`` must return a storage whose log is compacted
through ``entries[0]`` (the "dummy" entry: only its index and term matter) and
which holds ``entries[1:]``. Its stored snapshot is ``snapshot`` when given
(it must sit at ``entries[0]``), otherwise a snapshot at ``entries[0]`` with an
empty membership, or the empty snapshot when ``entries[0]`` has index 0.
:func:`populate` builds exactly that through the writing calls of
:class:`WritableStorage`; adapters whose writes go through a log engine can
wrap their view so that these calls become engine writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import pytest

from log_fixtures import ents, snapshot_at
from multiraft.raft.errors import CompactedError, SnapOutOfDateError, UnavailableError
from multiraft.raft.storage import NO_LIMIT, Storage
from multiraft.raft.types import (
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMetadata,
)


class WritableStorage(Storage, Protocol):
    """The raft ``Storage`` protocol plus the writes the contract exercises."""

    def append(self, entries: Sequence[Entry]) -> None: ...

    def set_hard_state(self, hs: HardState) -> None: ...

    def set_conf_state(self, cs: ConfState) -> None: ...

    def apply_snapshot(self, snap: Snapshot) -> None: ...

    def create_snapshot(
        self, index: int, conf_state: ConfState | None = None, data: bytes = b""
    ) -> Snapshot: ...

    def store_snapshot(self, snap: Snapshot) -> None: ...

    def compact(self, index: int) -> None: ...


StorageFactory = Callable[..., WritableStorage]


def populate(
    storage: WritableStorage, entries: Sequence[Entry], snapshot: Snapshot | None = None
) -> WritableStorage:
    """Bring an empty ``storage`` to the state ``make(entries, snapshot)`` describes."""
    dummy = entries[0]
    if snapshot is None and dummy.index > 0:
        snapshot = snapshot_at(dummy.index, dummy.term)
    if snapshot is not None:
        assert (snapshot.metadata.index, snapshot.metadata.term) == (dummy.index, dummy.term)
        storage.apply_snapshot(snapshot)
    storage.append(entries[1:])
    return storage


def _sized(index: int, term: int, data_len: int) -> Entry:
    return Entry(term=term, index=index, data=b"x" * data_len)


class StorageContract:
    """Contract tests; ``self.make`` is the adapter's ``storage_factory``."""

    make: StorageFactory

    @pytest.fixture(autouse=True)
    def _bind_storage_factory(self, storage_factory: StorageFactory) -> None:
        self.make = storage_factory

    # -- term ------------------------------------------------------------

    def test_term_of_compacted_index_raises_compacted(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        with pytest.raises(CompactedError):
            s.term(2)

    def test_term_of_dummy_and_stored_entries(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        assert [s.term(i) for i in (3, 4, 5)] == [3, 4, 5]

    def test_term_past_last_index_raises_unavailable(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        with pytest.raises(UnavailableError):
            s.term(6)

    def test_fresh_storage_knows_term_zero_of_index_zero(self) -> None:
        s = self.make(ents((0, 0)))
        assert s.term(0) == 0
        with pytest.raises(UnavailableError):
            s.term(1)

    # -- entries ----------------------------------------------------------

    @pytest.mark.parametrize(("lo", "hi"), [(2, 6), (3, 4)])
    def test_entries_at_or_below_dummy_raise_compacted(self, lo: int, hi: int) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5), (6, 6)))
        with pytest.raises(CompactedError):
            s.entries(lo, hi)

    @pytest.mark.parametrize(
        ("lo", "hi", "want"),
        [
            (4, 5, [(4, 4)]),
            (4, 6, [(4, 4), (5, 5)]),
            (4, 7, [(4, 4), (5, 5), (6, 6)]),
            (5, 7, [(5, 5), (6, 6)]),
            (6, 7, [(6, 6)]),
            (5, 5, []),
        ],
    )
    def test_entries_return_the_half_open_range(
        self, lo: int, hi: int, want: list[tuple[int, int]]
    ) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5), (6, 6)))
        assert s.entries(lo, hi, NO_LIMIT) == ents(*want)

    def test_entries_past_last_index_plus_one_raise_unavailable(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5), (6, 6)))
        with pytest.raises(UnavailableError):
            s.entries(4, 8)

    def test_entries_of_a_log_holding_only_the_dummy_raise_unavailable(self) -> None:
        s = self.make(ents((3, 3)))
        with pytest.raises(UnavailableError):
            s.entries(4, 4)

    @pytest.mark.parametrize(
        ("max_size", "want_last"),
        [
            (0, 4),  # always at least one entry
            (16, 4),
            (16 + 17, 4),  # one byte short of the second entry
            (16 + 18, 5),
            (16 + 18 + 19, 6),
            (16 + 18 + 19 + 20 - 1, 6),
            (16 + 18 + 19 + 20, 7),
            (NO_LIMIT, 7),
        ],
    )
    def test_entries_are_capped_by_max_size_but_at_least_one(
        self, max_size: int, want_last: int
    ) -> None:
        # Entry sizes 16, 18, 19, 20: cumulative 16, 34, 53, 73 bytes.
        stored = [
            Entry(0, 3),
            _sized(4, 4, 0),
            _sized(5, 4, 2),
            _sized(6, 4, 3),
            _sized(7, 4, 4),
        ]
        s = self.make(stored)
        got = s.entries(4, 8, max_size)
        assert got == stored[1 : want_last - 2]

    # -- first / last ------------------------------------------------------

    def test_first_and_last_index_follow_the_dummy_and_the_tail(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        assert (s.first_index(), s.last_index()) == (4, 5)
        s.append(ents((6, 5)))
        assert (s.first_index(), s.last_index()) == (4, 6)

    def test_empty_log_has_first_index_one_and_last_index_zero(self) -> None:
        s = self.make(ents((0, 0)))
        assert (s.first_index(), s.last_index()) == (1, 0)

    # -- compact ------------------------------------------------------------

    @pytest.mark.parametrize("index", [2, 3])
    def test_compact_at_or_below_dummy_raises_compacted_and_keeps_log(self, index: int) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        with pytest.raises(CompactedError):
            s.compact(index)
        assert (s.first_index(), s.last_index(), s.term(3)) == (4, 5, 3)

    @pytest.mark.parametrize(("index", "want_first"), [(4, 5), (5, 6)])
    def test_compact_makes_the_index_the_new_dummy(self, index: int, want_first: int) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        s.compact(index)
        assert (s.first_index(), s.last_index(), s.term(index)) == (want_first, 5, index)
        with pytest.raises(CompactedError):
            s.term(index - 1)

    def test_compact_past_last_index_raises_value_error(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        with pytest.raises(ValueError):
            s.compact(6)
        assert (s.first_index(), s.last_index()) == (4, 5)

    def test_compact_keeps_snapshot_and_hard_state(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        s.set_hard_state(HardState(term=5, vote=1, commit=5))
        s.compact(5)
        assert s.snapshot() == snapshot_at(3, 3)
        assert s.initial_state()[0] == HardState(term=5, vote=1, commit=5)

    # -- create_snapshot -----------------------------------------------------

    @pytest.mark.parametrize(("index", "term"), [(4, 4), (5, 5)])
    def test_create_snapshot_records_index_term_membership_and_data(
        self, index: int, term: int
    ) -> None:
        cs = ConfState(voters=(1, 2, 3))
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        snap = s.create_snapshot(index, cs, b"data")
        want = Snapshot(SnapshotMetadata(conf_state=cs, index=index, term=term), b"data")
        assert snap == want
        assert s.snapshot() == want
        # The log itself is untouched.
        assert (s.first_index(), s.last_index()) == (4, 5)

    def test_create_snapshot_without_conf_state_keeps_previous_membership(self) -> None:
        cs = ConfState(voters=(1, 2))
        s = self.make(ents((3, 3), (4, 4), (5, 5)), snapshot_at(3, 3, cs))
        snap = s.create_snapshot(5, None, b"d")
        assert snap.metadata == SnapshotMetadata(conf_state=cs, index=5, term=5)

    @pytest.mark.parametrize("index", [2, 3])
    def test_create_snapshot_not_newer_raises_snap_out_of_date(self, index: int) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        with pytest.raises(SnapOutOfDateError):
            s.create_snapshot(index, None, b"")
        assert s.snapshot() == snapshot_at(3, 3)

    def test_create_snapshot_past_last_index_raises_value_error(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        with pytest.raises(ValueError):
            s.create_snapshot(6, None, b"")

    def test_create_snapshot_of_compacted_index_raises_compacted(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5), (6, 6)))
        s.compact(5)
        with pytest.raises(CompactedError):
            s.create_snapshot(4, None, b"")

    def test_store_snapshot_keeps_the_log(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        snap = snapshot_at(4, 4, ConfState(voters=(7,)))
        s.store_snapshot(snap)
        assert s.snapshot() == snap
        assert (s.first_index(), s.last_index(), s.term(4)) == (4, 5, 4)

    def test_store_snapshot_with_wrong_term_raises_value_error(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        with pytest.raises(ValueError):
            s.store_snapshot(snapshot_at(4, 3))
        assert s.snapshot() == snapshot_at(3, 3)

    def test_store_snapshot_not_newer_raises_snap_out_of_date(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        with pytest.raises(SnapOutOfDateError):
            s.store_snapshot(snapshot_at(3, 3))

    # -- apply_snapshot --------------------------------------------------------

    def test_apply_snapshot_resets_the_log_to_the_snapshot(self) -> None:
        cs = ConfState(voters=(1, 2, 3))
        s = self.make(ents((0, 0), (1, 1), (2, 1)))
        snap = Snapshot(SnapshotMetadata(conf_state=cs, index=4, term=4), b"data")
        s.apply_snapshot(snap)
        assert s.snapshot() == snap
        assert (s.first_index(), s.last_index(), s.term(4)) == (5, 4, 4)
        assert s.initial_state()[1] == cs
        with pytest.raises(CompactedError):
            s.term(3)

    def test_apply_older_snapshot_raises_snap_out_of_date(self) -> None:
        s = self.make(ents((0, 0)))
        s.apply_snapshot(snapshot_at(4, 4))
        with pytest.raises(SnapOutOfDateError):
            s.apply_snapshot(snapshot_at(3, 3))
        with pytest.raises(SnapOutOfDateError):
            s.apply_snapshot(snapshot_at(4, 4))
        assert (s.snapshot(), s.last_index()) == (snapshot_at(4, 4), 4)

    def test_apply_snapshot_behind_the_log_still_drops_the_log(self) -> None:
        s = self.make(ents((0, 0), (1, 1), (2, 1), (3, 2)))
        s.apply_snapshot(snapshot_at(2, 1))
        assert (s.first_index(), s.last_index()) == (3, 2)

    # -- append ------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("new", "want"),
        [
            # the same entries again
            ([(3, 3), (4, 4), (5, 5)], [(4, 4), (5, 5)]),
            # a conflicting suffix replaces ours
            ([(3, 3), (4, 6), (5, 6)], [(4, 6), (5, 6)]),
            ([(3, 3), (4, 4), (5, 5), (6, 5)], [(4, 4), (5, 5), (6, 5)]),
            # compacted entries of the batch are skipped, the rest truncates and appends
            ([(2, 3), (3, 3), (4, 5)], [(4, 5)]),
            # truncate from the first new entry
            ([(4, 5)], [(4, 5)]),
            # plain append after the last entry
            ([(6, 5)], [(4, 4), (5, 5), (6, 5)]),
        ],
    )
    def test_append_truncates_conflicts_and_skips_compacted(
        self, new: list[tuple[int, int]], want: list[tuple[int, int]]
    ) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        s.append(ents(*new))
        assert s.entries(4, s.last_index() + 1) == ents(*want)
        assert (s.first_index(), s.term(3)) == (4, 3)

    def test_append_of_only_compacted_entries_is_ignored(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        s.append(ents((2, 9), (3, 9)))
        assert s.entries(4, 6) == ents((4, 4), (5, 5))
        assert s.term(3) == 3

    def test_append_nothing_changes_nothing(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        s.append([])
        assert (s.first_index(), s.last_index()) == (4, 5)

    def test_append_leaving_a_gap_raises_value_error(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)))
        with pytest.raises(ValueError):
            s.append(ents((7, 5)))
        assert s.last_index() == 5

    def test_append_keeps_entry_data(self) -> None:
        s = self.make(ents((0, 0)))
        e = [Entry(1, 1, data=b"a"), Entry(1, 2, data=b"bc")]
        s.append(e)
        assert s.entries(1, 3) == e

    # -- initial state ----------------------------------------------------------

    def test_initial_state_of_fresh_storage_is_empty(self) -> None:
        s = self.make(ents((0, 0)))
        assert s.initial_state() == (HardState(), ConfState())
        assert s.snapshot().is_empty()

    def test_initial_state_reports_hard_state_and_snapshot_membership(self) -> None:
        cs = ConfState(voters=(1, 2), learners=(3,))
        s = self.make(ents((3, 3), (4, 4)), snapshot_at(3, 3, cs))
        s.set_hard_state(HardState(term=4, vote=2, commit=4))
        assert s.initial_state() == (HardState(term=4, vote=2, commit=4), cs)

    def test_set_conf_state_overrides_snapshot_membership(self) -> None:
        s = self.make(ents((3, 3), (4, 4), (5, 5)), snapshot_at(3, 3, ConfState(voters=(1,))))
        s.set_conf_state(ConfState(voters=(1, 2)))
        assert s.initial_state()[1] == ConfState(voters=(1, 2))
        # A snapshot the node takes itself does not roll membership back.
        s.create_snapshot(4, ConfState(voters=(1,)), b"")
        assert s.initial_state()[1] == ConfState(voters=(1, 2))

    def test_applied_snapshot_replaces_conf_state_override(self) -> None:
        s = self.make(ents((0, 0), (1, 1)))
        s.set_conf_state(ConfState(voters=(1,)))
        s.apply_snapshot(snapshot_at(9, 2, ConfState(voters=(4, 5))))
        assert s.initial_state()[1] == ConfState(voters=(4, 5))
