"""MemoryLogEngine: one MemoryStorage per group, batched writes in the documented order."""

from __future__ import annotations

import pytest

from log_fixtures import ents, run, snapshot_at
from multiraft.ports import GroupWrite, LogEngine, WriteBatch
from multiraft.raft.types import ConfState, HardState
from storage import MemoryLogEngine, MemoryStorage


def test_engine_satisfies_the_log_engine_port() -> None:
    engine: LogEngine = MemoryLogEngine()
    assert isinstance(engine.storage(1), MemoryStorage)


def test_storage_is_created_empty_once_per_group() -> None:
    engine = MemoryLogEngine()
    s = engine.storage(7)
    assert engine.storage(7) is s
    assert (s.first_index(), s.last_index()) == (1, 0)
    assert s.initial_state() == (HardState(), ConfState())
    # Looking a group up is not persisting anything for it.
    assert engine.group_ids() == []


def test_one_write_persists_many_groups_with_one_sync() -> None:
    engine = MemoryLogEngine()
    engine.write(
        WriteBatch(
            [
                GroupWrite(
                    group_id=2,
                    entries=run(1, 3, 1),
                    hard_state=HardState(term=1, vote=1, commit=2),
                    conf_state=ConfState(voters=(1, 2, 3)),
                ),
                GroupWrite(group_id=1, entries=run(1, 1, 5)),
            ]
        )
    )
    assert engine.syncs == 1
    assert engine.group_ids() == [1, 2]
    s2 = engine.storage(2)
    assert s2.entries(1, 4) == run(1, 3, 1)
    assert s2.initial_state() == (
        HardState(term=1, vote=1, commit=2),
        ConfState(voters=(1, 2, 3)),
    )
    assert engine.storage(1).term(1) == 5


def test_each_write_counts_one_sync() -> None:
    engine = MemoryLogEngine()
    engine.write(WriteBatch([GroupWrite(1, entries=run(1, 1, 1))]))
    engine.write(WriteBatch([GroupWrite(1, entries=run(2, 2, 1))]))
    engine.write(WriteBatch())
    assert engine.syncs == 3


def test_appended_entries_truncate_a_conflicting_suffix() -> None:
    engine = MemoryLogEngine()
    engine.write(WriteBatch([GroupWrite(1, entries=run(1, 5, 1))]))
    engine.write(WriteBatch([GroupWrite(1, entries=ents((3, 2)))]))
    assert engine.storage(1).entries(1, 4) == ents((1, 1), (2, 1), (3, 2))


def test_incoming_snapshot_comes_before_the_entries_of_the_same_write() -> None:
    engine = MemoryLogEngine()
    engine.write(WriteBatch([GroupWrite(1, entries=run(1, 3, 1))]))
    snap = snapshot_at(10, 2, ConfState(voters=(1, 2)))
    engine.write(WriteBatch([GroupWrite(1, snapshot=snap, entries=run(11, 12, 2))]))
    s = engine.storage(1)
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 12, 2)
    assert s.snapshot() == snap
    assert s.initial_state()[1] == ConfState(voters=(1, 2))


def test_conf_state_written_with_a_snapshot_wins_over_the_snapshot() -> None:
    engine = MemoryLogEngine()
    engine.write(
        WriteBatch(
            [
                GroupWrite(
                    1,
                    snapshot=snapshot_at(10, 2, ConfState(voters=(1, 2))),
                    conf_state=ConfState(voters=(1, 2, 3)),
                )
            ]
        )
    )
    assert engine.storage(1).initial_state()[1] == ConfState(voters=(1, 2, 3))


def test_created_snapshot_is_stored_without_resetting_the_log_then_compacted() -> None:
    engine = MemoryLogEngine()
    engine.write(WriteBatch([GroupWrite(1, entries=run(1, 10, 1))]))
    snap = snapshot_at(8, 1, ConfState(voters=(1,)))
    engine.write(WriteBatch([GroupWrite(1, created_snapshot=snap, compact_to=6)]))
    s = engine.storage(1)
    assert s.snapshot() == snap
    assert (s.first_index(), s.last_index(), s.term(6)) == (7, 10, 1)


def test_created_snapshot_older_than_one_received_in_the_same_batch_is_dropped() -> None:
    engine = MemoryLogEngine()
    engine.write(WriteBatch([GroupWrite(1, entries=run(1, 5, 1))]))
    received = snapshot_at(20, 3)
    engine.write(
        WriteBatch(
            [GroupWrite(1, snapshot=received, created_snapshot=snapshot_at(5, 1), compact_to=4)]
        )
    )
    s = engine.storage(1)
    assert s.snapshot() == received
    assert (s.first_index(), s.last_index()) == (21, 20)


def test_compact_to_zero_compacts_nothing() -> None:
    engine = MemoryLogEngine()
    engine.write(WriteBatch([GroupWrite(1, entries=run(1, 5, 1), compact_to=0)]))
    assert engine.storage(1).first_index() == 1


def test_write_errors_from_storage_propagate() -> None:
    engine = MemoryLogEngine()
    engine.write(WriteBatch([GroupWrite(1, entries=run(1, 2, 1))]))
    with pytest.raises(ValueError, match="missing log entry"):
        engine.write(WriteBatch([GroupWrite(1, entries=run(5, 6, 1))]))
    with pytest.raises(ValueError, match="out of bound"):
        engine.write(WriteBatch([GroupWrite(1, compact_to=9)]))


def test_remove_group_drops_its_state() -> None:
    engine = MemoryLogEngine()
    engine.write(WriteBatch([GroupWrite(1, entries=run(1, 2, 1)), GroupWrite(2)]))
    engine.remove_group(1)
    engine.remove_group(99)
    assert engine.group_ids() == [2]
    assert engine.storage(1).last_index() == 0


def test_closed_engine_refuses_every_call() -> None:
    engine = MemoryLogEngine()
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.storage(1)
    with pytest.raises(RuntimeError, match="closed"):
        engine.write(WriteBatch())
    with pytest.raises(RuntimeError, match="closed"):
        engine.group_ids()
    with pytest.raises(RuntimeError, match="closed"):
        engine.remove_group(1)
    assert engine.syncs == 0
