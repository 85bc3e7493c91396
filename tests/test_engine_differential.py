"""Model-based differential test: the durable engine and the SQLite reference hold the same logs.

Hypothesis drives both through random batches (appends, conflicting
truncations, hard and conf states, incoming snapshots, snapshots with
compactions), removals, garbage collection and close-and-reopen, and checks
after every step that every group reads back identically, including ranged
reads with size limits and the errors of out-of-range reads.
"""

from __future__ import annotations

import random
import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from multiraft.raft.errors import StorageError
from storage.engine import DurableLogEngine
from storage.sqlite_log import SqliteLogEngine
from test_engine_workload import apply_step, log_state, random_step

_GROUPS = 5


class EngineMatchesReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="engine-diff-")
        self.options = {"segment_bytes": 2048, "gc_ratio": 1.0, "tail_cache_entries": 3}
        self.engine = self._open_engine()
        self.ref = SqliteLogEngine.open(f"{self.dir}/ref.sqlite3")

    def _open_engine(self) -> DurableLogEngine:
        return DurableLogEngine.open(f"{self.dir}/engine", durable_metadata=False, **self.options)

    @rule(seed=st.integers(0, 2**32 - 1))
    def write_a_random_batch(self, seed: int) -> None:
        rng = random.Random(seed)
        step = random_step(rng, self.ref, _GROUPS)
        apply_step(self.ref, step)
        apply_step(self.engine, step)

    @rule(group=st.integers(1, _GROUPS))
    def remove_a_group(self, group: int) -> None:
        self.ref.remove_group(group)
        self.engine.remove_group(group)

    @rule()
    def collect_garbage(self) -> None:
        self.engine.collect_garbage()

    @rule()
    def close_and_reopen(self) -> None:
        self.engine.close()
        self.ref.close()
        self.engine = self._open_engine()
        self.ref = SqliteLogEngine.open(f"{self.dir}/ref.sqlite3")
        assert self.engine.corruption_found() == []

    @precondition(lambda self: self.ref.group_ids())
    @rule(data=st.data())
    def ranged_reads_agree(self, data: st.DataObject) -> None:
        group = data.draw(st.sampled_from(self.ref.group_ids()))
        want_view, got_view = self.ref.storage(group), self.engine.storage(group)
        last = want_view.last_index()
        lo = data.draw(st.integers(0, last + 2))
        hi = data.draw(st.integers(lo, last + 3))
        max_size = data.draw(st.sampled_from([0, 20, 200, 2000, 2**63 - 1]))
        assert _outcome(lambda: got_view.entries(lo, hi, max_size)) == _outcome(
            lambda: want_view.entries(lo, hi, max_size)
        )
        assert _outcome(lambda: got_view.term(lo)) == _outcome(lambda: want_view.term(lo))

    @invariant()
    def logs_are_identical(self) -> None:
        assert log_state(self.engine) == log_state(self.ref)
        assert self.engine.group_ids() == self.ref.group_ids()
        assert self.engine.writes == self.engine.syncs

    def teardown(self) -> None:
        self.engine.close()
        self.ref.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _outcome(read: object) -> object:
    try:
        return read()  # type: ignore[operator]
    except StorageError as exc:
        return type(exc)


EngineMatchesReference.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None
)
TestEngineMatchesReference = EngineMatchesReference.TestCase
