"""The log writer times every durable write: the cycle's wait and the engine's share."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from multiraft.counters import NodeCounters
from multiraft.log_writer import LogWriter
from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import Entry, HardState
from storage.engine import DurableLogEngine
from storage.memory_engine import MemoryLogEngine


class SteppedClock:
    """A clock that reads ``step`` seconds later at every call."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class EngineTaking100us(MemoryLogEngine):
    """Reports 100 µs for every synced write."""

    def write(self, batch: WriteBatch) -> None:
        super().write(batch)
        if batch.sync:
            self.last_write_seconds = 0.000_1


class UntimedEngine:
    """A log engine that does not report its write times."""

    def __init__(self) -> None:
        self.inner = MemoryLogEngine()

    def storage(self, group_id: int) -> Any:
        return self.inner.storage(group_id)

    def write(self, batch: WriteBatch) -> None:
        self.inner.write(batch)

    def group_ids(self) -> Any:
        return self.inner.group_ids()

    def remove_group(self, group_id: int) -> None:
        self.inner.remove_group(group_id)

    def close(self) -> None:
        self.inner.close()


class _Counting:
    def __init__(self) -> None:
        self.applied = 0

    def apply(self, index: int, command: bytes) -> object:
        self.applied += 1
        return self.applied

    def snapshot(self) -> bytes:
        return str(self.applied).encode()

    def restore(self, data: bytes) -> None:
        self.applied = int(data or b"0")


def _batch(group_id: int, index: int, sync: bool = True) -> WriteBatch:
    gw = GroupWrite(group_id, entries=[Entry(term=1, index=index)], hard_state=HardState(1, 0, 0))
    return WriteBatch([gw], sync)


@pytest.mark.parametrize("in_thread", [False, True])
async def test_each_durable_write_is_timed_waited_and_in_the_engine(in_thread: bool) -> None:
    # The writer reads its clock when the cycle hands it the batch and when the
    # write returns: steps of 300 µs make every wait 300 µs (bucket 3); the
    # engine reports 100 µs of its own (bucket 1).
    counters = NodeCounters()
    engine = EngineTaking100us()
    writer = LogWriter(engine, in_thread, counters, clock=SteppedClock(0.000_3))
    for index in (1, 2, 3):
        await writer.write(_batch(7, index))
    d = writer.durations
    assert d.waited.count == d.in_engine.count == counters.storage_syncs == 3
    assert d.waited.buckets[3] == 3 and sum(d.waited.buckets) == 3
    assert d.in_engine.buckets[1] == 3 and sum(d.in_engine.buckets) == 3
    assert d.waited.total_seconds == pytest.approx(0.000_9)
    assert d.in_engine.total_seconds == pytest.approx(0.000_3)
    assert engine.syncs == 3


async def test_the_thread_runs_the_engines_own_write_method(monkeypatch: Any) -> None:
    # The simulator tells its disk's writes (delays, crashes, torn writes) by the
    # bound method handed to trio.to_thread: it must be the engine's own.
    handed: list[Any] = []
    real = trio.to_thread.run_sync

    async def recording_run_sync(fn: Any, *args: Any, **kwargs: Any) -> Any:
        handed.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", recording_run_sync)
    engine = MemoryLogEngine()
    writer = LogWriter(engine, True, NodeCounters())
    await writer.write(_batch(1, 1))
    await writer.write(WriteBatch([GroupWrite(1, hard_state=HardState(1, 0, 1))], False))
    assert len(handed) == 2
    assert all(fn.__self__ is engine and fn.__func__ is MemoryLogEngine.write for fn in handed)


async def test_unsynced_writes_are_counted_but_not_timed() -> None:
    counters = NodeCounters()
    writer = LogWriter(EngineTaking100us(), False, counters, clock=SteppedClock(0.000_1))
    await writer.write(_batch(1, 1))
    await writer.write(WriteBatch([GroupWrite(1, hard_state=HardState(1, 0, 1))], False))
    assert (counters.storage_syncs, counters.storage_unsynced_writes) == (1, 1)
    assert writer.durations.waited.count == writer.durations.in_engine.count == 1


async def test_an_engine_that_does_not_time_itself_leaves_in_engine_empty() -> None:
    writer = LogWriter(UntimedEngine(), False, NodeCounters(), clock=SteppedClock(0.000_1))  # type: ignore[arg-type]
    await writer.write(_batch(1, 1))
    assert writer.durations.waited.count == 1
    assert writer.durations.in_engine.count == 0


async def test_a_write_queued_behind_another_waits_for_it() -> None:
    # Two cycles' writes at once: the second waits for the lock while the first
    # holds it, so its wait covers both.
    clock = SteppedClock(0.0)
    release = trio.Event()

    class SlowEngine(MemoryLogEngine):
        def write(self, batch: WriteBatch) -> None:
            clock.now += 0.001
            super().write(batch)

    writer = LogWriter(SlowEngine(), False, NodeCounters(), clock=clock)

    async def first() -> None:
        async with writer._lock:
            release.set()
            # Hold the lock until the other write is queued on it, for 1 ms.
            await trio.testing.wait_all_tasks_blocked()
            clock.now += 0.001
        await writer.write(_batch(1, 1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await release.wait()
        await writer.write(_batch(2, 1))
    d = writer.durations
    # Each write waited 2 ms, bucket 5: the queued one for the holder's 1 ms and
    # its own; the holder's own write, queued behind it, for that write and its own.
    assert d.waited.buckets[5] == 2 and d.waited.count == 2


def test_the_durable_engine_reports_how_long_its_last_synced_write_took(tmp_path: Any) -> None:
    engine = DurableLogEngine.open(str(tmp_path / "log"))
    try:
        assert engine.last_write_seconds == 0.0
        engine.write(_batch(1, 1))
        synced = engine.last_write_seconds
        assert synced > 0.0
        engine.write(WriteBatch([GroupWrite(1, hard_state=HardState(1, 0, 1))], False))
        assert engine.last_write_seconds == synced
    finally:
        engine.close()


async def test_the_node_reports_its_write_durations_as_a_snapshot() -> None:
    from multiraft.config import NodeConfig
    from multiraft.node import open_node
    from transport.memory import MemoryNetwork

    net = MemoryNetwork()
    async with open_node(NodeConfig(1), transport=net.transport(1)) as node:
        await node.create_group(1, [1], state_machine=_Counting(), campaign=True)
        with trio.fail_after(10):
            while node.leader_of(1) != 1:
                await trio.sleep(0.01)
        before = node.write_durations()
        await node.propose(1, b"x")
        after = node.write_durations()
        window = after.minus(before)
        syncs = node.stats()["storage_syncs"]
        # The node's in-memory engine times itself too.
        assert after.waited.count == after.in_engine.count == syncs
        # One group of one voter: the proposal's cycle persists it with one sync.
        assert window.waited.count == window.in_engine.count == 1
        # A snapshot does not move with later writes.
        await node.propose(1, b"y")
        assert node.write_durations().waited.count > after.waited.count
