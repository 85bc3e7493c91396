"""A reader's idle deadline shared by all its reads and moved out lazily."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from transport.framing import FrameReader, Kind, record


async def test_a_silent_stream_fails_between_one_and_one_and_a_half_timeouts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    reader = FrameReader(ours, 1 << 20, idle_timeout=10.0)
    began = trio.current_time()
    with pytest.raises(trio.TooSlowError), reader.idle_deadline():
        await reader.read()
    assert trio.current_time() - began == pytest.approx(15.0)
    await theirs.aclose()


async def test_records_arriving_within_the_timeout_never_time_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    reader = FrameReader(ours, 1 << 20, idle_timeout=10.0)
    got: list[bytes] = []

    async def send() -> None:
        for i in range(30):
            # 9.9 s of silence before each record: 297 s in all, far past the
            # shared deadline's first value.
            await trio.sleep(9.9)
            await theirs.send_all(record(Kind.FRAME, b"r%d" % i))
        await theirs.send_eof()

    began = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        with reader.idle_deadline():
            while (item := await reader.read()) is not None:
                got.append(item[1])
    assert got == [b"r%d" % i for i in range(30)]
    assert trio.current_time() - began == pytest.approx(297.0)


async def test_the_deadline_moves_at_most_every_half_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    reader = FrameReader(ours, 1 << 20, idle_timeout=10.0)
    deadlines = set()

    async def send() -> None:
        for _ in range(40):
            await trio.sleep(1.0)
            await theirs.send_all(record(Kind.FRAME, b"x"))
        await theirs.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        with reader.idle_deadline():
            while await reader.read() is not None:
                assert reader._idle_scope is not None
                deadlines.add(reader._idle_scope.deadline)
    # 40 s of records a second apart: the deadline moved every 5 to 6 s, not 40 times.
    assert 6 <= len(deadlines) <= 9
