"""Each checker of the simulator catches a planted bug within a bounded number of seeds.

Every bug is planted with ``monkeypatch`` (nothing in the library knows about
it). The sweep stops at the first failing seed; the test then checks the kind
of violation found and that the same seed passes once the bug is removed, so
the violation is the bug's doing and not a false alarm. The failure report
(seed, fault schedule summary, replay command) is printed: run with ``-s`` to
see it. Replaying a seed with ``multiraft sim`` needs the same bug planted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from multiraft.node import Node
from multiraft.raft import raft as raft_module
from multiraft.raft.log import RaftLog
from multiraft.raft.types import NONE, Entry, EntryType, MessageType
from multiraft.replica import Replica
from multiraft.testing.simulator import SimConfig, SimResult, run_seed
from sim_bugs import read_without_barrier

CONFIG = SimConfig(groups=10, steps=10)
SAFETY = {
    "election safety",
    "log matching",
    "committed entry changed",
    "committed entry lost",
    "leader completeness",
    "state machine safety",
    "group failure",
    "node failure",
}


def first_failure(max_seeds: int, config: SimConfig = CONFIG) -> SimResult:
    for seed in range(max_seeds):
        result = run_seed(seed, config)
        if not result.ok:
            print(f"caught after {seed + 1} seed(s):\n{result.failure_report()}")
            return result
    pytest.fail(f"no violation in seeds 0..{max_seeds - 1}")


def assert_caught(monkeypatch: pytest.MonkeyPatch, max_seeds: int, kinds: set[str]) -> SimResult:
    result = first_failure(max_seeds)
    first = result.violations[0]
    assert first.kind in kinds, result.failure_report()
    assert f"multiraft sim --seed {result.seed} --groups 10 --steps 10 --trace" in (
        result.failure_report()
    )
    monkeypatch.undo()
    clean = run_seed(result.seed, CONFIG)
    assert clean.ok, clean.failure_report()
    return result


def test_leader_committing_an_old_term_entry_by_counting_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Figure 8 of the Raft paper: commit by counting replicas whatever the entry's term."""

    def commit_by_counting(self: RaftLog, max_index: int, term: int) -> bool:
        if max_index > self.committed:
            self.commit_to(max_index)
            return True
        return False

    monkeypatch.setattr(RaftLog, "maybe_commit", commit_by_counting)
    result = assert_caught(monkeypatch, 30, SAFETY)
    assert result.faults["leader-churn"] + result.faults["stale-appends"] > 0


def test_follower_granting_two_votes_in_one_term_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = raft_module.Raft._handle_vote_request

    def vote_again(self: raft_module.Raft, m: raft_module.Message) -> None:
        if m.type is MessageType.VOTE and self.lead == NONE and self.vote not in (NONE, m.from_):
            given = self.vote
            self.vote = NONE  # forget the vote already given in this term
            original(self, m)
            if self.vote == NONE:
                self.vote = given
            return
        original(self, m)

    monkeypatch.setattr(raft_module.Raft, "_handle_vote_request", vote_again)
    result = assert_caught(monkeypatch, 30, SAFETY)
    # Two leaders of one term: seen as two senders, or as two different entries
    # persisted at one (index, term) when both append before either sends.
    assert result.violations[0].kind in {"election safety", "log matching"}


def test_replica_skipping_a_committed_command_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Node 3 drops the second command of every batch of three or more entries it applies."""
    original = Replica.apply_commands

    def skip_one(self: Replica, entries: list[Entry], *args: Any, **kwargs: Any) -> Any:
        if self.node_id == 3 and len(entries) >= 3:
            normal = [e for e in entries if e.type is EntryType.NORMAL and e.data]
            if len(normal) >= 2:
                entries = [e for e in entries if e is not normal[1]]
        return original(self, entries, *args, **kwargs)

    monkeypatch.setattr(Replica, "apply_commands", skip_one)
    result = assert_caught(monkeypatch, 10, SAFETY)
    assert result.violations[0].kind == "state machine safety"


def test_read_served_by_a_stale_replica_without_read_index_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Node, "read", read_without_barrier)
    result = assert_caught(monkeypatch, 10, {"linearizability"})
    assert "NOT linearizable" in result.violations[0].detail


def test_elections_that_stop_after_a_few_terms_fail_the_liveness_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original: Callable[[raft_module.Raft, bytes], None] = raft_module.Raft.hup

    def tired_hup(self: raft_module.Raft, kind: bytes) -> None:
        if self.term < 4:
            original(self, kind)

    monkeypatch.setattr(raft_module.Raft, "hup", tired_hup)
    result = assert_caught(monkeypatch, 10, {"liveness"})
    assert "after every fault healed" in result.violations[0].detail
