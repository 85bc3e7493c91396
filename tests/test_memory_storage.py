"""MemoryStorage keeps the storage contract (etcd's MemoryStorage semantics)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from log_fixtures import ents
from multiraft.raft.types import Entry, Snapshot
from storage import MemoryStorage
from storage_contract import StorageContract, StorageFactory, populate


def make_memory_storage(
    entries: Sequence[Entry], snapshot: Snapshot | None = None
) -> MemoryStorage:
    storage = MemoryStorage()
    populate(storage, entries, snapshot)
    return storage


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    def storage_factory(self) -> StorageFactory:
        return make_memory_storage


def test_entries_returns_a_copy_that_later_appends_do_not_change() -> None:
    s = make_memory_storage(ents((0, 0), (1, 1), (2, 1)))
    got = s.entries(1, 3)
    s.append(ents((2, 2), (3, 2)))
    assert got == ents((1, 1), (2, 1))
    assert s.entries(1, 4) == ents((1, 1), (2, 2), (3, 2))


def test_append_does_not_alias_the_callers_list() -> None:
    s = MemoryStorage()
    batch = ents((1, 1), (2, 1))
    s.append(batch)
    batch.append(Entry(1, 3))
    assert s.last_index() == 2
