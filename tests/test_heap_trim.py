"""The C heap is trimmed once after a large wave of folded replicas, never in a trickle."""

from __future__ import annotations

import platform
import sys

import trio
import trio.testing

from multiraft.heap_trim import LONG_WAVE_FACTOR, TRIM_AFTER_FOLDS, HeapTrimmer, malloc_trim
from node_cluster import Cluster, wait_until


class _CountingTrim:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return 0


def test_a_wave_ends_for_trimming_once_it_is_over_and_only_past_the_threshold() -> None:
    t = HeapTrimmer(_CountingTrim(), threshold=5)
    assert t.wave_ended(3, more_to_come=True) is False
    assert t.wave_ended(2, more_to_come=True) is False
    assert t.folds == 5
    assert t.wave_ended(0, more_to_come=False) is True
    assert t.folds == 0
    # A trickle below the threshold adds up across waves.
    assert t.wave_ended(4, more_to_come=False) is False
    assert t.folds == 4
    assert t.wave_ended(1, more_to_come=False) is True
    assert (t.folds, t.trims) == (0, 0)
    # A wave that never ends still ends for trimming after 16 times the threshold.
    assert t.wave_ended(79, more_to_come=True) is False
    assert t.wave_ended(1, more_to_come=True) is True
    assert (t.folds, LONG_WAVE_FACTOR) == (0, 16)


def test_trim_calls_the_release_function_and_counts_only_real_calls() -> None:
    trim = _CountingTrim()
    t = HeapTrimmer(trim)
    t.trim()
    t.trim()
    assert (trim.calls, t.trims, t.threshold) == (2, 2, TRIM_AFTER_FOLDS)
    idle = HeapTrimmer(None)
    idle.trim()
    assert (idle.trims, TRIM_AFTER_FOLDS) == (0, 4096)


def test_malloc_trim_is_glibcs_where_the_process_runs_on_glibc_and_none_elsewhere() -> None:
    trim = malloc_trim()
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    if on_glibc:
        assert trim is not None
        # malloc_trim reports whether it released memory back to the system.
        assert trim() in (0, 1)
    else:
        assert trim is None


async def test_a_node_trims_once_after_its_groups_fold_in_one_wave(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        trims = {i: _CountingTrim() for i in c.ids}
        for i in c.ids:
            c.nodes[i]._table.heap_trimmer = HeapTrimmer(trims[i], threshold=12)
        gids = list(range(12))
        await c.create_groups(gids, leader=lambda g: g % 3 + 1)
        await c.wait_leaders(gids)
        await c.settle(gids)
        await wait_until(
            lambda: all(
                c.nodes[i]._table.replicas[g].dormant is not None for i in c.ids for g in gids
            ),
            2,
            "every replica dormant",
        )
        # The first twelve folds reach the threshold once; a replica woken by a
        # late message and folded again counts towards the next trim only.
        assert {i: trims[i].calls for i in c.ids} == {1: 1, 2: 1, 3: 1}
        assert all(c.nodes[i]._table.heap_trimmer.folds < 12 for i in c.ids)
        # The set of ticked groups was rebuilt, in the same order.
        assert all(list(c.nodes[i]._table.active) == [] for i in c.ids)


async def test_the_ticked_groups_rebuilt_after_a_wave_keep_their_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        table = c.nodes[1]._table
        table.heap_trimmer = HeapTrimmer(_CountingTrim(), threshold=1)
        await c.create_groups(range(4))
        await c.wait_leaders(range(4))
        await c.settle(range(4))
        await wait_until(
            lambda: all(table.replicas[g].dormant is not None for g in range(4)), 2, "dormant"
        )
        before = table.active
        awake = [table.replicas[g] for g in (3, 1)]
        for r in awake:
            table.wake(r)
        assert list(table.active) == awake
        r0 = table.replicas[0]
        r0.rawnode  # noqa: B018 (rebuilt, so it can fold again)
        assert table.folds is not None and r0 in table.folds
        # Folded now rather than after the usual quiet ticks: the wave ends with it.
        table.folds.cancel(r0)
        table.settling = {r0: 1}
        table.hibernate_settled()
        assert r0.dormant is not None
        assert table.active is not before and list(table.active) == awake
