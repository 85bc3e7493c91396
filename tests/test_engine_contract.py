"""The raft Storage contract holds for the durable engine's views and the SQLite reference."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.errors import CompactedError, SnapOutOfDateError
from multiraft.raft.storage import NO_LIMIT, Storage
from multiraft.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from storage.engine import DurableLogEngine
from storage.sqlite_log import SqliteLogEngine
from storage_contract import StorageContract, StorageFactory, WritableStorage, populate


class _Engine(Protocol):
    def storage(self, group_id: int) -> Storage: ...

    def write(self, batch: WriteBatch) -> None: ...


class EngineBackedStorage:
    """A group view whose writing calls become one-group engine writes.

    The engine skips (rather than raises on) a created snapshot that is not
    newer and a compaction at or below the dummy entry, as the coordinator
    wants; the contract expects ``MemoryStorage``'s errors for those, so this
    adapter checks them first. Every other error comes from the engine.
    """

    def __init__(self, engine: _Engine, group_id: int) -> None:
        self._engine = engine
        self._group_id = group_id

    @property
    def _view(self) -> Storage:
        return self._engine.storage(self._group_id)

    def _write(self, **fields: object) -> None:
        self._engine.write(WriteBatch([GroupWrite(self._group_id, **fields)]))  # type: ignore[arg-type]

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._view.initial_state()

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        return self._view.entries(lo, hi, max_size)

    def term(self, i: int) -> int:
        return self._view.term(i)

    def last_index(self) -> int:
        return self._view.last_index()

    def first_index(self) -> int:
        return self._view.first_index()

    def snapshot(self) -> Snapshot:
        return self._view.snapshot()

    def append(self, entries: Sequence[Entry]) -> None:
        if entries:
            self._write(entries=list(entries))

    def set_hard_state(self, hs: HardState) -> None:
        self._write(hard_state=hs)

    def set_conf_state(self, cs: ConfState) -> None:
        self._write(conf_state=cs)

    def apply_snapshot(self, snap: Snapshot) -> None:
        self._write(snapshot=snap)

    def create_snapshot(
        self, index: int, conf_state: ConfState | None = None, data: bytes = b""
    ) -> Snapshot:
        current = self.snapshot()
        if index <= current.metadata.index:
            raise SnapOutOfDateError(f"snapshot {index} is not newer")
        view = self._view
        in_log = view.first_index() - 1 <= index <= view.last_index()
        term = view.term(index) if in_log else 0
        cs = conf_state if conf_state is not None else current.metadata.conf_state
        snap = Snapshot(SnapshotMetadata(cs, index, term), data)
        self._write(created_snapshot=snap)
        return snap

    def store_snapshot(self, snap: Snapshot) -> None:
        if snap.metadata.index <= self.snapshot().metadata.index:
            raise SnapOutOfDateError(f"snapshot {snap.metadata.index} is not newer")
        self._write(created_snapshot=snap)

    def compact(self, index: int) -> None:
        if index < self.first_index():
            raise CompactedError(f"index {index} is already compacted")
        self._write(compact_to=index)


_group_ids = itertools.count(1)


class TestDurableEngineViews(StorageContract):
    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> Iterator[StorageFactory]:
        engine = DurableLogEngine.open(str(tmp_path / "log"))

        def make(entries: Sequence[Entry], snapshot: Snapshot | None = None) -> WritableStorage:
            return populate(EngineBackedStorage(engine, next(_group_ids)), entries, snapshot)

        yield make
        engine.close()


class TestDurableEngineViewsAfterReopen(StorageContract):
    """Populated, closed and reopened: every read comes from recovery and the disk."""

    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> Iterator[StorageFactory]:
        path = str(tmp_path / "log")
        opened: list[DurableLogEngine] = []

        class Reopening:
            engine = DurableLogEngine.open(path)

            def storage(self, group_id: int) -> Storage:
                return self.engine.storage(group_id)

            def write(self, batch: WriteBatch) -> None:
                self.engine.write(batch)

        holder = Reopening()

        def make(entries: Sequence[Entry], snapshot: Snapshot | None = None) -> WritableStorage:
            s = populate(EngineBackedStorage(holder, next(_group_ids)), entries, snapshot)
            holder.engine.close()
            holder.engine = DurableLogEngine.open(path)
            opened.append(holder.engine)
            return s

        yield make
        holder.engine.close()


class TestSqliteReferenceViews(StorageContract):
    @pytest.fixture
    def storage_factory(self, tmp_path: Path) -> Iterator[StorageFactory]:
        engine = SqliteLogEngine.open(str(tmp_path / "ref.sqlite3"))

        def make(entries: Sequence[Entry], snapshot: Snapshot | None = None) -> WritableStorage:
            return populate(EngineBackedStorage(engine, next(_group_ids)), entries, snapshot)

        yield make
        engine.close()
