"""The pieces of ``multiraft bench groups``, on the mock clock at small sizes."""

from __future__ import annotations

import pytest
import trio
import trio.testing

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


class _Leaders:
    """Knows a leader for every group but the ``unknown`` ones."""

    def __init__(self, unknown: set[int]) -> None:
        self.unknown = unknown
        self.asked: list[int] = []

    def leader_of(self, group_id: int) -> int | None:
        self.asked.append(group_id)
        return None if group_id in self.unknown else 1


async def test_waiting_for_leaders_names_the_first_group_each_node_lacks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    nodes = {1: _Leaders(set()), 2: _Leaders({3, 5})}
    with pytest.raises(RuntimeError, match=r"node 2 of group 3$"):
        await gb._wait_leaders(nodes, 6, timeout=1)  # type: ignore[arg-type]
    # Node 1's groups were each asked once; node 2 stops at group 3 every poll.
    assert nodes[1].asked == [0, 1, 2, 3, 4, 5]
    assert nodes[2].asked[:4] == [0, 1, 2, 3] and set(nodes[2].asked[4:]) == {3}
    nodes[2].unknown.clear()
    await gb._wait_leaders(nodes, 6, timeout=1)  # type: ignore[arg-type]
