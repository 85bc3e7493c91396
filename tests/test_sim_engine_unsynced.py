"""The simulated disk's unsynced batches: visible at once, durable only with a later sync."""

from __future__ import annotations

import random

import pytest

from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import Entry, HardState
from multiraft.testing.sim_engine import DiskModel, SimLogEngine


class Recorder:
    def __init__(self) -> None:
        self.commits: list[tuple[int, ...]] = []

    def on_write(self, node_id: int, engine: SimLogEngine, batch: WriteBatch) -> None:
        self.commits.append(
            tuple(gw.hard_state.commit for gw in batch.groups if gw.hard_state is not None)
        )

    def on_remove(self, node_id: int, group_id: int) -> None:
        self.commits.append(())


def engine(seed: int = 0) -> tuple[SimLogEngine, Recorder]:
    rec = Recorder()
    return SimLogEngine(3, DiskModel(random.Random(seed)), rec), rec


def entries_to(last: int) -> WriteBatch:
    ents = [Entry(2, i, data=b"e") for i in range(1, last + 1)]
    return WriteBatch([GroupWrite(1, ents, HardState(2, 1, 0))])


def commit(c: int) -> WriteBatch:
    return WriteBatch([GroupWrite(1, hard_state=HardState(2, 1, c))], sync=False)


def stored_commit(e: SimLogEngine) -> int:
    return e.storage(1).initial_state()[0].commit


def test_an_unsynced_batch_is_visible_at_once_and_reported_durable_at_the_next_sync() -> None:
    e, rec = engine()
    e.write(entries_to(3))
    e.write(commit(1))
    e.write(commit(2))
    assert stored_commit(e) == 2
    assert rec.commits == [(0,)]
    e.write(WriteBatch([GroupWrite(1, [Entry(2, 4, data=b"e")])]))
    assert rec.commits == [(0,), (1,), (2,), ()]
    e.lose_unsynced()
    assert stored_commit(e) == 2


def test_a_crash_keeps_a_prefix_of_the_unsynced_batches_and_undoes_the_rest() -> None:
    kept_counts = set()
    for seed in range(40):
        e, rec = engine(seed)
        e.write(entries_to(3))
        for c in (1, 2, 3):
            e.write(commit(c))
        e.lose_unsynced()
        kept = len(rec.commits) - 1
        kept_counts.add(kept)
        assert rec.commits == [(0,), *[(c,) for c in range(1, kept + 1)]], f"seed {seed}"
        assert stored_commit(e) == kept, f"seed {seed}"
        assert e.lost_unsynced_writes == 3 - kept, f"seed {seed}"
        assert e.storage(1).last_index() == 3, f"seed {seed}"
    assert kept_counts == {0, 1, 2, 3}


def test_removing_a_group_makes_earlier_unsynced_batches_durable() -> None:
    e, rec = engine()
    e.write(entries_to(2))
    e.write(commit(2))
    e.remove_group(2)
    assert rec.commits == [(0,), (2,), ()]


def test_an_unsynced_batch_holding_more_than_commit_moves_is_refused() -> None:
    e, _ = engine()
    e.write(entries_to(2))
    with pytest.raises(ValueError, match="holds more than a commit index"):
        e.write(WriteBatch([GroupWrite(1, [Entry(2, 3)], HardState(2, 1, 2))], sync=False))
    with pytest.raises(ValueError, match="changes more than the commit index"):
        e.write(WriteBatch([GroupWrite(1, hard_state=HardState(3, 0, 2))], sync=False))


def test_unsynced_batches_are_reported_before_the_synced_batch_changes_the_log() -> None:
    e, _ = engine()
    seen: list[tuple[int, int]] = []

    class FirstIndexRecorder(Recorder):
        def on_write(self, node_id: int, engine: SimLogEngine, batch: WriteBatch) -> None:
            seen.append((stored_commit(engine), engine.storage(1).first_index()))

    e.observer = FirstIndexRecorder()
    e.write(entries_to(3))
    e.write(commit(3))
    e.write(WriteBatch([GroupWrite(1, compact_to=3)]))
    # The commit move was reported while its entries were still in the log.
    assert seen == [(0, 1), (3, 1), (3, 4)]
