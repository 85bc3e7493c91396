"""The bounded CI sweep of the simulator: fixed seeds that must show no violation.

About a minute in all. Longer sweeps are for a soak machine, e.g.
``multiraft sim --seeds 1000 --groups 100 --steps 40``. A failure lists every
failing seed with its violations, fault schedule summary and replay command.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from multiraft.testing.simulator import SimConfig, SimResult, run_seed


def sweep(seeds: Iterable[int], config: SimConfig) -> list[SimResult]:
    results = [run_seed(seed, config) for seed in seeds]
    failed = [r for r in results if not r.ok]
    assert not failed, "\n\n".join(r.failure_report() for r in failed)
    return results


def test_three_nodes_ten_groups_under_every_kind_of_fault() -> None:
    results = sweep(range(100, 130), SimConfig(groups=10, steps=10))
    faults = sum((r.faults for r in results), start=results[0].faults.__class__())
    # Every fault kind was exercised somewhere in the sweep.
    for kind in (
        "drop",
        "delay",
        "duplicate",
        "reorder",
        "partition",
        "asymmetric",
        "bridge",
        "isolate",
        "isolate-leaders",
        "crash",
        "slow-disk",
        "slow-apply",
        "short-appends",
        "stale-appends",
        "leader-churn",
        "clock-skew",
    ):
        assert faults[kind] > 0, kind
    assert sum(r.kv_operations for r in results) > 1000
    assert sum(r.acknowledged for r in results) > 300


#: Seeds 200-231 of this shape found four bugs, all fixed since and pinned here: a member
#: added after the leader's last snapshot that never caught up (211, 213, 229, 231), a
#: restart inside a joint config (205), a removed leader quiescing its group (201), and
#: the PROBE/REPLICATE message storm under duplicated or cut-short appends (223, 228).
#: (Seed 588 of `--nodes 5 --groups 10 --steps 10` once left a group of two voters without
#: a leader for good, under timing a since-reverted change had shifted; with today's timing
#: it passes without the fix, so tests/test_node_stale_term_votes.py pins that mechanism.)
MEMBERSHIP_SEEDS = (201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 213, 223, 228, 229, 231)


def test_five_nodes_with_membership_races() -> None:
    results = sweep(MEMBERSHIP_SEEDS, SimConfig(nodes=5, groups=10, steps=10))
    assert sum(r.membership_changes for r in results) > 10


@pytest.mark.parametrize(("seed", "groups", "steps"), [(300, 200, 6), (301, 1000, 4)])
def test_many_groups(seed: int, groups: int, steps: int) -> None:
    (result,) = sweep(range(seed, seed + 1), SimConfig(groups=groups, steps=steps))
    # Groups start from a snapshot of their membership: what is committed is each
    # first leader's entry, the entries of later terms and the clients' commands.
    assert result.entries_committed > groups * 3


def test_a_restarted_node_does_not_take_an_earlier_runs_entry_for_its_proposal() -> None:
    # Seed 2047: node 2, restarted, applied an entry its crashed run had proposed
    # with the same proposal id as a new proposal, and acknowledged the new one with
    # the old entry's result (tests/test_node_proposal_ids_across_restarts.py).
    (result,) = sweep([2047], SimConfig(groups=30, steps=15))
    assert result.entries_committed > 30
