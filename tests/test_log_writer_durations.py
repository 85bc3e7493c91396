"""The log writer times every durable write: the cycle's wait and the engine's own share."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from multiraft.counters import NodeCounters
from multiraft.log_writer import LogWriter
from multiraft.ports import GroupWrite, WriteBatch
from multiraft.raft.types import Entry, HardState
from storage.memory_engine import MemoryLogEngine


class SteppedClock:
    """A clock that reads ``step`` seconds later at every call."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _batch(group_id: int, index: int, sync: bool = True) -> WriteBatch:
    gw = GroupWrite(group_id, entries=[Entry(term=1, index=index)], hard_state=HardState(1, 0, 0))
    return WriteBatch([gw], sync)


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


@pytest.mark.parametrize("in_thread", [False, True])
async def test_each_durable_write_is_timed_waited_and_in_the_engine(in_thread: bool) -> None:
    # The clock is read four times per write: the cycle's start, the engine's
    # start and end, the cycle's end. Steps of 100 µs make the engine's share
    # 100 µs (bucket 1) and the wait 300 µs (bucket 3), exactly.
    counters = NodeCounters()
    engine = MemoryLogEngine()
    writer = LogWriter(engine, in_thread, counters, clock=SteppedClock(0.000_1))
    for index in (1, 2, 3):
        await writer.write(_batch(7, index))
    d = writer.durations
    assert d.waited.count == d.in_engine.count == counters.storage_syncs == 3
    assert d.waited.buckets[3] == 3 and sum(d.waited.buckets) == 3
    assert d.in_engine.buckets[1] == 3 and sum(d.in_engine.buckets) == 3
    assert d.waited.total_seconds == pytest.approx(0.000_9)
    assert d.in_engine.total_seconds == pytest.approx(0.000_3)
    assert engine.syncs == 3


async def test_unsynced_writes_are_counted_but_not_timed() -> None:
    counters = NodeCounters()
    writer = LogWriter(MemoryLogEngine(), False, counters, clock=SteppedClock(0.000_1))
    await writer.write(_batch(1, 1))
    await writer.write(WriteBatch([GroupWrite(1, hard_state=HardState(1, 0, 1))], False))
    assert counters.storage_unsynced_writes == 1
    assert writer.durations.waited.count == writer.durations.in_engine.count == 1


async def test_a_write_queued_behind_another_waits_for_it() -> None:
    # Two cycles' writes at once: the second waits for the lock while the first
    # is in the engine, so its wait covers both engine calls.
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
    # Both engine calls took 1,000 µs: bucket 4, [512, 1024) µs.
    assert d.in_engine.buckets[4] == 2 and d.in_engine.count == 2
    # Each write waited 2 ms, bucket 5: the queued one for the holder's 1 ms and
    # its own; the holder's own write, queued behind it, for that write and its own.
    assert d.waited.buckets[5] == 2 and d.waited.count == 2


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
        assert after.waited.count == after.in_engine.count == syncs
        # One group of one voter: the proposal's cycle persists it with one sync.
        assert window.waited.count == window.in_engine.count == 1
        # A snapshot does not move with later writes.
        await node.propose(1, b"y")
        assert node.write_durations().waited.count > after.waited.count
