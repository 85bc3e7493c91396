"""Quiesced replicas fold ``dormant_after_ticks`` after quiescing, unless woken before."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from multiraft.config import NodeConfig
from multiraft.fold_schedule import FoldSchedule
from multiraft.replica import Replica
from node_cluster import Cluster, wait_until


def test_replicas_come_due_after_the_delay_in_the_order_they_quiesced() -> None:
    s: FoldSchedule[str] = FoldSchedule(10)
    s.schedule("a", 3)
    s.schedule("b", 4)
    assert (s.due_tick("a"), s.due_tick("b"), s.due_tick("c")) == (13, 14, None)
    assert s.take_due(12) == []
    assert s.take_due(13) == ["a"]
    assert s.due_tick("a") is None
    assert len(s) == 1 and "b" in s and "a" not in s
    assert s.take_due(13) == []
    assert s.take_due(20) == ["b"]
    assert len(s) == 0


def test_a_cancelled_replica_never_comes_due() -> None:
    s: FoldSchedule[str] = FoldSchedule(2)
    s.schedule("a", 0)
    s.schedule("b", 0)
    s.cancel("a")
    s.cancel("zzz")  # not scheduled: nothing happens
    assert s.take_due(5) == ["b"]
    assert len(s) == 0


def test_scheduling_again_restarts_the_wait() -> None:
    s: FoldSchedule[str] = FoldSchedule(5)
    s.schedule("a", 0)
    s.schedule("a", 3)  # woken and quiesced again, or rebuilt while quiesced
    assert s.take_due(5) == []  # its first due tick is stale
    assert s.take_due(7) == []
    assert s.take_due(8) == ["a"]


def test_the_schedule_needs_a_delay_of_at_least_one_tick() -> None:
    with pytest.raises(ValueError, match="after_ticks"):
        FoldSchedule(0)


@pytest.mark.parametrize("value", [-1, 1.5, "10"])
def test_node_config_rejects_a_bad_dormant_after_ticks_naming_it(value: object) -> None:
    with pytest.raises(ValueError, match="dormant_after_ticks"):
        NodeConfig(1, dormant_after_ticks=value)  # type: ignore[arg-type]


def _replica(c: Cluster, node: int, group: int) -> Replica:
    r: Replica = c.nodes[node]._table.replicas[group]
    return r


def _quiesced_everywhere(c: Cluster, g: int) -> bool:
    return all(_replica(c, i, g).quiesced for i in c.ids)


async def _quiesced_group(c: Cluster) -> None:
    """Create group 1 led by node 1 and wait until it is quiesced on every node."""
    await c.create_groups([1], leader=lambda g: 1)
    await c.wait_leaders([1])
    await wait_until(lambda: _quiesced_everywhere(c, 1), 5, "quiesced")


async def test_a_quiesced_group_folds_exactly_dormant_after_ticks_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, dormant_after_ticks=5) as c:
        await _quiesced_group(c)
        table = c.nodes[1]._table
        leader = _replica(c, 1, 1)
        folds = table.folds
        assert folds is not None
        due = folds.due_tick(leader)
        assert due is not None and leader.dormant is None
        # Scheduled when the leader quiesced, at most one tick before we saw it.
        assert table.tick - 1 <= due - 5 <= table.tick
        await wait_until(lambda: table.tick >= due - 1, 5, "the tick before")
        assert leader.dormant is None
        assert c.nodes[1].stats()["dormant_groups"] == 0
        await wait_until(lambda: leader.dormant is not None, 5, "folded")
        assert table.tick == due
        assert leader not in folds
        await wait_until(
            lambda: all(c.nodes[i].stats()["dormant_groups"] == 1 for i in c.ids), 5, "all folded"
        )


async def test_a_group_touched_before_the_delay_is_never_folded_nor_rebuilt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, dormant_after_ticks=20) as c:
        await c.create_groups([1], leader=lambda g: 1)
        await c.wait_leaders([1])
        index = 0
        for k in range(4):
            await wait_until(lambda: _quiesced_everywhere(c, 1), 5, "quiesced")
            assert all(_replica(c, i, 1).dormant is None for i in c.ids)
            # Well within the 20 ticks: the group wakes whole, nothing to rebuild.
            await trio.sleep(0.5)
            index, _ = await c.nodes[1].propose(1, b"cmd-%d" % k)  # type: ignore[misc]
        assert index == 8  # the initial snapshot at 3, the leader's entry at 4, then 5..8
        assert [c.nodes[i].stats()["dormant_groups"] for i in c.ids] == [0, 0, 0]
        await wait_until(
            lambda: all(_replica(c, i, 1).dormant is not None for i in c.ids), 5, "folded at last"
        )


async def test_dormant_after_ticks_zero_folds_as_soon_as_the_group_settles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, dormant_after_ticks=0) as c:
        await _quiesced_group(c)
        table = c.nodes[1]._table
        assert table.folds is None
        quiesced_at = table.tick
        await wait_until(lambda: _replica(c, 1, 1).dormant is not None, 5, "folded")
        assert table.tick <= quiesced_at + 1
