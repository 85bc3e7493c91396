"""The pieces of ``multiraft bench groups``, on the mock clock at small sizes."""

from __future__ import annotations

import trio

from multiraft.bench import groups_bench as gb
from multiraft.bench.report import BenchReport
from transport import MemoryNetwork


async def test_bench_creation_elects_every_group_with_its_campaigner_at_term_two(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with gb._cluster(MemoryNetwork(), 60) as nodes:
        await gb._create(nodes, 60, gb._rotating_campaigner)
        await gb._wait_leaders(nodes, 60, timeout=5)
        assert gb._not_first_elected(nodes, 60, gb._rotating_campaigner) == 0
        assert gb._not_first_elected(nodes, 60, lambda g: 1) == 40
        await gb._wait(lambda: gb._all_quiesced(nodes, 60), 5, "quiescence")


async def test_bench_heartbeat_figures_are_one_frame_per_tick_per_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    report = BenchReport("groups", "test")
    await gb._heartbeats(report, 50, 5)
    figures = {label: value for label, value, _ in report.figures}
    assert figures["heartbeat frames per tick per peer, 50 active groups"] == 1.0
    assert figures["  heartbeat-response frames per tick per peer, 50 groups"] == 1.0
    # 50 records per frame, each a few dozen bytes once encoded.
    assert 50 * 20 < figures["  heartbeat bytes per tick per peer, 50 groups"] < 50 * 100
