"""The in-memory network: delivery, refusals, seeded faults and counters."""

from __future__ import annotations

import pytest
import trio

from multiraft.frames import Frame, GroupMessage, HeartbeatRecord, SnapshotOutcome
from multiraft.raft import Message, MessageType, Snapshot, SnapshotMetadata, SnapshotStatus
from transport import MemoryNetwork


def frame(src: int, dst: int, n: int = 1, hb: int = 0) -> Frame:
    msgs = [GroupMessage(g, Message(type=MessageType.APP, to=dst, from_=src)) for g in range(n)]
    hbs = [HeartbeatRecord(g, src, dst, 3, 7) for g in range(hb)]
    return Frame(src, dst, msgs, hbs)


async def drain(t: object) -> list[Frame | SnapshotOutcome]:
    out: list[Frame | SnapshotOutcome] = []
    while True:
        with trio.move_on_after(0.001):
            out.append(await t.receive())  # type: ignore[attr-defined]
            continue
        return out


async def test_frames_arrive_in_order_and_are_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(measure_bytes=True)
    a, b = net.transport(1), net.transport(2)
    frames = [frame(1, 2, n=2, hb=3) for _ in range(5)] + [frame(1, 2, n=1)]
    assert all(a.send(2, f) for f in frames)
    assert await drain(b) == frames
    assert (net.frames_sent(1, 2), net.messages_sent(1, 2)) == (6, 26)
    assert net.heartbeat_records_sent(1, 2) == 15
    assert net.heartbeat_frames_sent(1, 2) == 5
    assert net.bytes_sent(1, 2) > 0
    assert net.frames_sent(2, 1) == 0
    assert net.frames_delivered == 6


async def test_refused_sends_return_false(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    a, b, c = net.transport(1), net.transport(2), net.transport(3)
    assert not a.send(9, frame(1, 9))  # unknown node
    net.partition({1}, {2, 3})
    assert not a.send(2, frame(1, 2))
    assert b.send(3, frame(2, 3))
    net.heal()
    net.isolate(3)
    assert not b.send(3, frame(2, 3))
    assert not c.send(2, frame(3, 2))
    net.heal()
    assert b.send(3, frame(2, 3))
    await c.aclose()
    assert not b.send(3, frame(2, 3))
    assert net.frames_refused(2, 3) == 2
    with pytest.raises(trio.EndOfChannel):
        await c.receive()
    c2 = net.transport(3)
    assert b.send(3, frame(2, 3))
    assert len(await drain(c2)) == 1


async def test_crash_drops_queued_frames(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    a, b = net.transport(1), net.transport(2)
    net.set_delay(0.5)
    a.send(2, frame(1, 2))
    net.crash(2)
    await trio.sleep(1)
    net.recover(2)
    assert await drain(b) == []


def drop_pattern(seed: int) -> list[int]:
    async def run() -> list[int]:
        net = MemoryNetwork(seed=seed)
        a, b = net.transport(1), net.transport(2)
        net.set_drop_rate(0.5)
        for i in range(100):
            a.send(2, frame(1, 2, n=i + 1))
        return [len(f.messages) for f in await drain(b) if isinstance(f, Frame)]

    return trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))


def test_drop_rate_is_deterministic_per_seed() -> None:
    first, again, other = drop_pattern(3), drop_pattern(3), drop_pattern(4)
    assert first == again
    assert first != other
    assert 30 < len(first) < 70


async def test_drop_predicate_delay_duplicate_and_reorder(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=1)
    a, b = net.transport(1), net.transport(2)
    net.set_drop_predicate(lambda s, d, f: len(f.messages) == 2)
    for n in (1, 2, 3):
        assert a.send(2, frame(1, 2, n=n))
    assert [len(f.messages) for f in await drain(b)] == [1, 3]  # type: ignore[union-attr]
    assert net.frames_dropped(1, 2) == 1
    net.set_drop_predicate(None)

    net.set_delay(1.0)
    start = trio.current_time()
    a.send(2, frame(1, 2))
    await b.receive()
    assert trio.current_time() - start == pytest.approx(1.0)
    net.set_delay(0)

    net.set_duplicate_rate(1.0)
    a.send(2, frame(1, 2, n=4))
    got = await drain(b)
    assert [len(f.messages) for f in got] == [4, 4]  # type: ignore[union-attr]
    assert got[0] is not got[1]
    net.set_duplicate_rate(0)

    net.set_reorder(1.0, 1.0)
    for n in range(1, 21):
        a.send(2, frame(1, 2, n=n))
    await trio.sleep(2)
    order = [len(f.messages) for f in await drain(b)]  # type: ignore[union-attr]
    assert sorted(order) == list(range(1, 21))
    assert order != sorted(order)


async def test_snapshot_fate_is_reported_to_the_sender(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    a, b = net.transport(1), net.transport(2)
    snap = Snapshot(SnapshotMetadata(index=5, term=2), b"state")
    f = Frame(1, 2, [GroupMessage(8, Message(type=MessageType.SNAP, to=2, from_=1, snapshot=snap))])
    assert a.send(2, f)
    assert await a.receive() == SnapshotOutcome(8, 2, SnapshotStatus.FINISH)
    assert await b.receive() is f
    net.set_drop_rate(1.0)
    assert a.send(2, f)
    assert await a.receive() == SnapshotOutcome(8, 2, SnapshotStatus.FAILURE)


def test_fault_settings_are_validated() -> None:
    net = MemoryNetwork()
    with pytest.raises(ValueError, match="p"):
        net.set_drop_rate(1.5)
    with pytest.raises(ValueError, match="delay"):
        net.set_delay(2, 1)
    with pytest.raises(ValueError, match="two partition sets"):
        net.partition({1, 2}, {2, 3})
