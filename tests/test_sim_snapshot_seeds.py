"""Simulator seeds that found the two snapshot bugs of the coordinator stay clean.

* ``--seed 29 --nodes 5 --groups 10 --steps 15`` and ``--workload rangekv
  --nodes 5 --seed 0``: a member added after the leader's last stored snapshot,
  with the log before it compacted, was sent that snapshot (which does not list
  it) over and over and never caught up. The leader now takes a current one.
* ``--workload rangekv --seed 19``: an empty replica of an initial member
  replayed the bootstrap membership entries one at a time, saw itself as the
  only voter and elected itself alone, changing a committed entry. Groups now
  start from a snapshot of the whole initial membership.
"""

from __future__ import annotations

import pytest

from multiraft.testing.simulator import SimConfig, run_seed


@pytest.mark.parametrize(
    ("seed", "config"),
    [
        (29, SimConfig(nodes=5, groups=10, steps=15)),
        (0, SimConfig(workload="rangekv", nodes=5, steps=10)),
        (19, SimConfig(workload="rangekv", steps=10)),
    ],
    ids=["member-added-after-snapshot", "range-moved-in", "empty-founder-replica"],
)
def test_seed_that_found_a_snapshot_bug_runs_clean(seed: int, config: SimConfig) -> None:
    result = run_seed(seed, config)
    assert result.ok, result.failure_report()
    assert result.membership_changes > 0 or result.splits > 0
