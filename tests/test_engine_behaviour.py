"""The durable engine's own promises: syncs, failures, formats, locking, caching, GC, threads."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from multiraft.ports import GroupWrite, LogEngine, WriteBatch
from multiraft.raft.errors import CompactedError
from multiraft.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from storage.engine import DurableLogEngine
from storage.errors import (
    EngineClosedError,
    EngineFailedError,
    EngineLockedError,
    FormatVersionError,
)
from storage.files import OsFileLayer, OsLogFile
from storage.metadata import METADATA_FILE
from storage.records import BatchBuilder, RecordType, encode_record
from storage.recovery import segment_name


def _append(group: int, first: int, n: int, term: int = 1, size: int = 10) -> GroupWrite:
    return GroupWrite(
        group, entries=[Entry(term, i, data=b"%d" % i * size) for i in range(first, first + n)]
    )


def test_engine_satisfies_the_log_engine_port(tmp_path: Path) -> None:
    engine: LogEngine = DurableLogEngine.open(str(tmp_path))
    engine.close()


def test_one_write_of_many_groups_is_one_write_and_one_sync(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path))
    try:
        engine.write(WriteBatch([_append(g, 1, 3) for g in range(1, 101)]))
        engine.write(WriteBatch([_append(g, 4, 1) for g in range(1, 101)]))
        assert (engine.writes, engine.syncs) == (2, 2)
        assert engine.group_ids() == list(range(1, 101))
        assert [e.index for e in engine.storage(57).entries(1, 5)] == [1, 2, 3, 4]
    finally:
        engine.close()


def test_a_new_segment_syncs_the_directory_and_gets_the_whole_batch(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path), segment_bytes=4096, gc_ratio=1e9)
    try:
        engine.write(WriteBatch([_append(1, 1, 1)]))
        assert (engine.segment_seqs(), engine.dir_syncs) == ([1], 1)
        # Bigger than what is left of the segment (and than a segment): a new one.
        engine.write(WriteBatch([_append(1, 2, 20, size=300)]))
        assert (engine.segment_seqs(), engine.dir_syncs, engine.syncs) == ([1, 2], 2, 2)
        assert os.path.getsize(tmp_path / segment_name(2)) > 20 * 300
    finally:
        engine.close()


class _FailingLayer(OsFileLayer):
    """Real files whose ``sync`` or ``pwrite`` fails once asked to."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.fail: str | None = None
        self.calls: dict[str, int] = {"sync": 0, "pwrite": 0}

    def open(self, name: str, *, create: bool) -> OsLogFile:
        layer = self
        inner = super().open(name, create=create)

        class Failing(OsLogFile):
            def sync(self) -> None:
                layer.calls["sync"] += 1
                if layer.fail == "sync":
                    raise OSError(5, "Input/output error")
                inner.sync()

            def pwrite(self, data: bytes, offset: int) -> None:
                layer.calls["pwrite"] += 1
                if layer.fail == "pwrite":
                    raise OSError(28, "No space left on device")
                inner.pwrite(data, offset)

        return Failing(inner._fd)


@pytest.mark.parametrize("failing", ["sync", "pwrite"])
def test_a_failed_write_or_sync_stops_the_engine_for_good(tmp_path: Path, failing: str) -> None:
    layer = _FailingLayer(str(tmp_path))
    engine = DurableLogEngine.open(str(tmp_path), files=layer)
    engine.write(WriteBatch([_append(1, 1, 2)]))
    layer.fail = failing
    with pytest.raises(EngineFailedError):
        engine.write(WriteBatch([_append(1, 3, 1)]))
    calls = dict(layer.calls)
    layer.fail = None
    # Never retried, never acknowledged, and nothing else works either.
    with pytest.raises(EngineFailedError):
        engine.write(WriteBatch([_append(1, 3, 1)]))
    with pytest.raises(EngineFailedError):
        engine.storage(1)
    with pytest.raises(EngineFailedError):
        engine.group_ids()
    assert layer.calls == calls
    assert (engine.writes, engine.syncs) == (1, 1)
    engine.close()
    engine = DurableLogEngine.open(str(tmp_path))
    try:
        assert engine.storage(1).last_index() in (2, 3)
        assert engine.corruption_found() == []
    finally:
        engine.close()


def test_a_view_refuses_reads_once_the_engine_failed(tmp_path: Path) -> None:
    layer = _FailingLayer(str(tmp_path))
    engine = DurableLogEngine.open(str(tmp_path), files=layer)
    engine.write(WriteBatch([_append(1, 1, 2)]))
    view = engine.storage(1)
    layer.fail = "sync"
    with pytest.raises(EngineFailedError):
        engine.write(WriteBatch([_append(1, 3, 1)]))
    with pytest.raises(EngineFailedError):
        view.term(1)
    engine.close()


def test_metadata_of_a_newer_format_refuses_to_open_with_a_clear_message(
    tmp_path: Path,
) -> None:
    DurableLogEngine.open(str(tmp_path)).close()
    db = sqlite3.connect(tmp_path / METADATA_FILE)
    db.execute("UPDATE meta SET value=99 WHERE key='format_version'")
    db.commit()
    db.close()
    with pytest.raises(FormatVersionError, match=r"format version 99.*upgrade multiraft"):
        DurableLogEngine.open(str(tmp_path))


def test_a_segment_of_a_newer_format_refuses_to_open(tmp_path: Path) -> None:
    lead = encode_record(RecordType.SEGMENT_START, 0, (7).to_bytes(4, "little") + bytes(12))
    buf, _ = BatchBuilder().finish(1, 1, lead)
    (tmp_path / segment_name(1)).write_bytes(buf)
    with pytest.raises(FormatVersionError, match="format version 7"):
        DurableLogEngine.open(str(tmp_path))


def test_a_second_engine_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path))
    with pytest.raises(EngineLockedError):
        DurableLogEngine.open(str(tmp_path))
    engine.close()
    DurableLogEngine.open(str(tmp_path)).close()


class _CountingLayer(OsFileLayer):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.preads = 0

    def open(self, name: str, *, create: bool) -> OsLogFile:
        layer = self
        inner = super().open(name, create=create)

        class Counting(OsLogFile):
            def pread(self, size: int, offset: int) -> bytes:
                layer.preads += 1
                return inner.pread(size, offset)

        return Counting(inner._fd)


def test_reads_of_recent_entries_come_from_the_tail_cache(tmp_path: Path) -> None:
    layer = _CountingLayer(str(tmp_path))
    engine = DurableLogEngine.open(str(tmp_path), files=layer, tail_cache_entries=8)
    try:
        for first in range(1, 41, 4):
            engine.write(WriteBatch([_append(1, first, 4)]))
        view = engine.storage(1)
        before = layer.preads
        assert [e.index for e in view.entries(33, 41)] == list(range(33, 41))
        assert view.term(40) == 1
        assert layer.preads == before
        # Older entries are read back from the segment.
        assert [e.data for e in view.entries(1, 3)] == [b"1" * 10, b"2" * 10]
        assert layer.preads > before
    finally:
        engine.close()


def test_disk_use_stays_bounded_by_live_data_with_a_slow_group(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path), segment_bytes=16 * 1024, gc_ratio=2.0)
    slow = GroupWrite(99, entries=[Entry(1, 1, data=b"slow")], hard_state=HardState(1, 1, 1))
    engine.write(WriteBatch([slow]))
    for k in range(1, 1501):
        writes = [_append(g, k, 1, size=20) for g in range(1, 11)]
        if k > 10:
            for w in writes:
                w.compact_to = k - 10
        engine.write(WriteBatch(writes))
    try:
        # About 1,500 x 10 x 100 bytes went through; a few segments remain.
        assert engine.bytes_written > 1_000_000
        assert len(engine.segment_seqs()) <= 4
        assert engine.disk_bytes() <= 4 * 16 * 1024
        assert engine.groups_relocated > 0 and engine.segments_deleted > 50
        assert engine.storage(99).entries(1, 2) == slow.entries
        assert engine.storage(99).initial_state()[0] == HardState(1, 1, 1)
        assert (engine.storage(3).first_index(), engine.storage(3).last_index()) == (1491, 1500)
    finally:
        engine.close()
    engine = DurableLogEngine.open(str(tmp_path), segment_bytes=16 * 1024)
    try:
        assert engine.corruption_found() == []
        assert engine.storage(99).entries(1, 2) == slow.entries
        assert [e.index for e in engine.storage(3).entries(1491, 1501)] == list(range(1491, 1501))
        assert engine.reopen_seconds < 1.0
    finally:
        engine.close()


def test_removed_group_stays_removed_and_can_come_back(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path))
    engine.write(WriteBatch([_append(1, 1, 3), _append(2, 1, 3)]))
    engine.remove_group(1)
    engine.remove_group(77)
    assert engine.group_ids() == [2]
    assert engine.storage(1).last_index() == 0
    engine.close()
    engine = DurableLogEngine.open(str(tmp_path))
    assert (engine.group_ids(), engine.removed_groups()) == ([2], {1})
    assert engine.storage(1).last_index() == 0
    engine.write(WriteBatch([_append(1, 1, 1, term=5)]))
    engine.close()
    engine = DurableLogEngine.open(str(tmp_path))
    try:
        assert engine.group_ids() == [1, 2]
        assert engine.storage(1).entries(1, 2) == [Entry(5, 1, data=b"1" * 10)]
        assert engine.removed_groups() == set()
    finally:
        engine.close()


def test_an_empty_write_of_a_new_group_persists_the_group(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path))
    engine.write(WriteBatch([GroupWrite(5)]))
    engine.storage(6)
    engine.close()
    engine = DurableLogEngine.open(str(tmp_path))
    try:
        assert engine.group_ids() == [5]
    finally:
        engine.close()


def test_an_invalid_batch_persists_nothing(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path))
    try:
        engine.write(WriteBatch([_append(1, 1, 2)]))
        with pytest.raises(ValueError, match="missing log entry"):
            engine.write(WriteBatch([_append(2, 1, 1), _append(1, 9, 1)]))
        with pytest.raises(ValueError, match="twice"):
            engine.write(WriteBatch([_append(1, 3, 1), _append(1, 4, 1)]))
        assert (engine.writes, engine.group_ids(), engine.storage(1).last_index()) == (1, [1], 2)
    finally:
        engine.close()


def test_snapshots_and_conf_state_survive_a_restart(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path))
    snap = Snapshot(SnapshotMetadata(ConfState(voters=(1, 2)), 10, 3), b"x" * 5000)
    cs = ConfState(voters=(1, 2, 3), learners=(4,))
    engine.write(WriteBatch([GroupWrite(1, snapshot=snap, entries=[Entry(3, 11)], conf_state=cs)]))
    engine.close()
    engine = DurableLogEngine.open(str(tmp_path))
    try:
        view = engine.storage(1)
        assert view.snapshot() == snap
        assert view.initial_state() == (HardState(), cs)
        assert (view.first_index(), view.last_index(), view.term(10)) == (11, 11, 3)
    finally:
        engine.close()


def test_closed_engine_refuses_every_call(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path))
    view = engine.storage(1)
    engine.close()
    engine.close()
    for call in (
        lambda: engine.storage(1),
        lambda: engine.write(WriteBatch([_append(1, 1, 1)])),
        engine.group_ids,
        lambda: engine.remove_group(1),
        view.last_index,
    ):
        with pytest.raises(EngineClosedError, match="closed"):
            call()


def test_readers_on_another_thread_never_see_half_a_write(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path), segment_bytes=64 * 1024, tail_cache_entries=4)
    stop = threading.Event()
    problems: list[str] = []

    def read() -> None:
        views = [engine.storage(g) for g in (1, 2)]
        while not stop.is_set():
            for view in views:
                hs, _ = view.initial_state()
                first, last = view.first_index(), view.last_index()
                if hs.commit > last:
                    problems.append(f"commit {hs.commit} past last {last}")
                if last >= first:
                    try:
                        got = view.entries(first, last + 1)
                    except CompactedError:
                        continue  # compacted between the two calls: fine
                    if [e.index for e in got] != list(range(first, first + len(got))):
                        problems.append("entries do not run on")

    def guarded_read() -> None:
        try:
            read()
        except Exception as exc:
            problems.append(repr(exc))

    reader = threading.Thread(target=guarded_read)
    reader.start()
    try:
        last = 0
        for k in range(300):
            # Every write appends (sometimes over a conflicting suffix), moves the
            # commit index to the new last entry, and compacts now and then.
            start = max(1, last - 2) if k % 7 == 0 else last + 1
            writes = []
            for g in (1, 2):
                w = _append(g, start, 3, term=k + 1)
                w.hard_state = HardState(k + 1, 0, start + 2)
                if k % 50 == 49:
                    w.compact_to = start - 5
                writes.append(w)
            engine.write(WriteBatch(writes))
            last = start + 2
    finally:
        stop.set()
        reader.join()
        engine.close()
    assert problems == []


def test_node_and_cluster_ids_live_in_the_metadata_across_restarts(tmp_path: Path) -> None:
    engine = DurableLogEngine.open(str(tmp_path))
    assert (engine.metadata.node_id, engine.metadata.cluster_id) == (None, None)
    engine.metadata.node_id = 3
    engine.metadata.cluster_id = "c-42"
    engine.close()
    engine = DurableLogEngine.open(str(tmp_path))
    try:
        assert (engine.metadata.node_id, engine.metadata.cluster_id) == (3, "c-42")
        assert engine.metadata.format_version == 1
    finally:
        engine.close()
