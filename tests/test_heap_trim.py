"""The C heap is trimmed once after a large wave of folded replicas, never in a trickle."""

from __future__ import annotations

import sys

import pytest
import trio
import trio.testing

from multiraft.heap_trim import TRIM_AFTER_FOLDS, HeapTrimmer, malloc_trim
from node_cluster import Cluster, wait_until


class _CountingTrim:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return 0


def test_a_wave_trims_once_when_it_ends_and_only_past_the_threshold() -> None:
    trim = _CountingTrim()
    t = HeapTrimmer(trim, threshold=5)
    t.wave_step(3, more_to_come=True)
    t.wave_step(2, more_to_come=True)
    assert (trim.calls, t.trims, t.folds) == (0, 0, 5)
    t.wave_step(0, more_to_come=False)
    assert (trim.calls, t.trims, t.folds) == (1, 1, 0)
    # A trickle below the threshold adds up across waves before it trims.
    t.wave_step(4, more_to_come=False)
    assert (trim.calls, t.folds) == (1, 4)
    t.wave_step(1, more_to_come=False)
    assert (trim.calls, t.trims, t.folds) == (2, 2, 0)


def test_without_a_trim_call_a_large_wave_only_resets_the_count() -> None:
    t = HeapTrimmer(None, threshold=2)
    t.wave_step(3, more_to_come=False)
    assert (t.trims, t.folds, t.threshold) == (0, 0, 2)
    assert HeapTrimmer(None).threshold == TRIM_AFTER_FOLDS == 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_glibc_malloc_trim_is_found_and_reports_whether_it_released_memory() -> None:
    trim = malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)


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
