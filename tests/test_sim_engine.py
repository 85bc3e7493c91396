"""The crash-aware simulated disk: what a crash keeps and what it loses."""

from __future__ import annotations

import random

import trio

from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import Entry, HardState
from multiraft.testing.sim_engine import DiskModel, SimLogEngine
from multiraft.testing.sim_runtime import CostMeter, SimulatedThreads, run_deterministic


class Recorder:
    def __init__(self) -> None:
        self.writes: list[tuple[int, list[int]]] = []
        self.removed: list[tuple[int, int]] = []

    def on_write(self, node_id: int, engine: SimLogEngine, batch: WriteBatch) -> None:
        self.writes.append((node_id, [gw.group_id for gw in batch.groups]))

    def on_remove(self, node_id: int, group_id: int) -> None:
        self.removed.append((node_id, group_id))


def engine(torn_rate: float = 0.0, seed: int = 0) -> tuple[SimLogEngine, Recorder]:
    disk = DiskModel(random.Random(seed), base_seconds=0.01)
    disk.torn_write_rate = torn_rate
    rec = Recorder()
    return SimLogEngine(7, disk, rec), rec


def batch(*groups: int, index: int = 1, term: int = 1) -> WriteBatch:
    return WriteBatch(
        [
            GroupWrite(g, [Entry(term, index, data=b"g%d" % g)], HardState(term, 0, 0))
            for g in groups
        ]
    )


def run(main: object) -> None:
    run_deterministic(main, seed=1, threads=SimulatedThreads(CostMeter()))  # type: ignore[arg-type]


def test_write_takes_effect_after_its_sync_delay_and_is_reported_once() -> None:
    eng, rec = engine()
    times: list[float] = []

    async def main() -> None:
        await trio.to_thread.run_sync(eng.write, batch(1, 2))
        times.append(trio.current_time())

    run(main)
    # base 10 ms scaled by a draw in [0.5, 1.5)
    assert 0.005 <= times[0] < 0.015
    assert rec.writes == [(7, [1, 2])]
    assert eng.storage(1).last_index() == 1
    assert eng.storage(2).entries(1, 2) == [Entry(1, 1, data=b"g2")]
    assert (eng.lost_writes, eng.torn_writes) == (0, 0)


def test_crash_during_the_sync_delay_loses_the_whole_write() -> None:
    eng, rec = engine(torn_rate=0.0)

    async def main() -> None:
        await trio.to_thread.run_sync(eng.write, batch(1))
        with trio.move_on_after(0.001):
            await trio.to_thread.run_sync(eng.write, batch(1, index=2))

    run(main)
    assert rec.writes == [(7, [1])]
    assert eng.storage(1).last_index() == 1
    assert (eng.lost_writes, eng.torn_writes) == (1, 0)


def test_torn_write_keeps_a_strict_prefix_of_the_batch_groups() -> None:
    eng, rec = engine(torn_rate=1.0, seed=5)

    async def main() -> None:
        with trio.move_on_after(0.001):
            await trio.to_thread.run_sync(eng.write, batch(1, 2, 3, 4))

    run(main)
    assert eng.torn_writes == 1 and eng.lost_writes == 0
    assert len(rec.writes) == 1
    kept = rec.writes[0][1]
    assert kept == [1, 2, 3, 4][: len(kept)] and 1 <= len(kept) <= 3
    for g in (1, 2, 3, 4):
        assert eng.storage(g).last_index() == (1 if g in kept else 0)


def test_slow_disk_adds_its_delay_to_every_sync() -> None:
    eng, _ = engine()
    eng.disk.slow_seconds = 0.5
    times: list[float] = []

    async def main() -> None:
        await trio.to_thread.run_sync(eng.write, batch(1))
        times.append(trio.current_time())

    run(main)
    assert 0.25 + 0.005 <= times[0] < 0.75 + 0.015


def test_removed_group_leaves_a_tombstone_until_written_again() -> None:
    eng, rec = engine()
    eng.write(batch(1, 2))
    eng.remove_group(2)
    assert eng.removed_groups() == [2]
    assert list(eng.group_ids()) == [1]
    assert rec.removed == [(7, 2)]
    eng.write(batch(2))
    assert eng.removed_groups() == []
    assert list(eng.group_ids()) == [1, 2]
