"""Simulator seeds where a skewed clock, not a bug, used to fail the liveness check.

``--seed 12033 --groups 30 --steps 15``: node 1 ticks at x0.60 (its election
timeouts are shorter than the others') and has the shortest log of group 24,
and PreVote is off. Each of its campaigns moved the other two to a new term and
restarted their election timers before they could time out, and it could not
win their votes: no leader for the whole 40 s liveness window (etcd raft
behaves the same; PreVote is what prevents it). ``FaultSchedule.heal_all`` now
restarts every node with a skewed clock at the normal rate, as it lifts every
other fault, before liveness is checked.
"""

from __future__ import annotations

from multiraft.testing.simulator import SimConfig, run_seed


def test_a_fast_clock_without_prevote_no_longer_blocks_elections_after_healing() -> None:
    result = run_seed(12033, SimConfig(groups=30, steps=15))
    assert result.ok, result.failure_report()
    assert result.violations == []
    assert result.elections > 0
