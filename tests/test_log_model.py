"""RaftLog over MemoryStorage agrees with a plain list model under random operations.

The model is the full log as a list of entries (index i at position i - 1),
plus the commit and apply cursors and the compaction point. The machine
appends (at the end, or over an uncommitted suffix), persists what the log
hands out (sometimes racing a later append, as a slow disk would), commits,
applies through ``next_committed_ents`` and compacts applied entries.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from multiraft.raft.errors import CompactedError, UnavailableError
from multiraft.raft.log import RaftLog, limit_size
from multiraft.raft.types import Entry
from storage import MemoryStorage

MAX_APPLYING_SIZE = 64


def make_entry(index: int, term: int) -> Entry:
    # (index, term) fixes the data, as in raft: one entry per index and term.
    return Entry(term=term, index=index, data=b"e" * ((index * 7 + term) % 23))


class RaftLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.storage = MemoryStorage()
        self.log = RaftLog(self.storage, max_applying_size=MAX_APPLYING_SIZE)
        self.model: list[Entry] = []
        self.term = 1
        self.committed = 0
        self.applied = 0
        self.compacted = 0

    def _append_model(self, start: int, count: int, term: int) -> list[Entry]:
        new = [make_entry(start + k, term) for k in range(count)]
        del self.model[start - 1 :]
        self.model.extend(new)
        return new

    @rule(count=st.integers(1, 4), bump=st.booleans())
    def append_at_end(self, count: int, bump: bool) -> None:
        if bump:
            self.term += 1
        new = self._append_model(len(self.model) + 1, count, self.term)
        assert self.log.append(new) == len(self.model)

    @precondition(lambda self: len(self.model) > self.committed)
    @rule(data=st.data(), count=st.integers(0, 4))
    def overwrite_uncommitted_suffix(self, data: st.DataObject, count: int) -> None:
        # A new leader's entries replace ours from some uncommitted index on.
        start = data.draw(st.integers(self.committed + 1, len(self.model)), label="start")
        self.term += 1
        prev_term = self.model[start - 2].term if start >= 2 else 0
        new = self._append_model(start, count + 1, self.term)
        assert self.log.maybe_append(start - 1, prev_term, self.committed, new) == len(self.model)

    @rule()
    def persist(self) -> None:
        pending = self.log.unstable_entries()
        if pending:
            self.storage.append(pending)
            self.log.stable_to(pending[-1].index, pending[-1].term)
        assert self.log.unstable_entries() == []
        assert self.storage.last_index() == len(self.model)

    @precondition(lambda self: len(self.model) > self.committed)
    @rule(count=st.integers(1, 3))
    def persist_racing_an_overwrite(self, count: int) -> None:
        # The disk writes what Ready handed out while a newer leader already
        # replaced part of it; stable_to must then keep the newer entries.
        pending = self.log.unstable_entries()
        start = max(self.committed + 1, len(self.model) - 1)
        self.term += 1
        prev_term = self.model[start - 2].term if start >= 2 else 0
        new = self._append_model(start, count, self.term)
        assert self.log.maybe_append(start - 1, prev_term, self.committed, new) == len(self.model)
        if pending:
            self.storage.append(pending)
            self.log.stable_to(pending[-1].index, pending[-1].term)
        assert self.log.unstable_entries() == self.model[self.log.unstable.offset - 1 :]
        assert self.log.unstable.offset <= start

    @precondition(lambda self: len(self.model) > self.committed)
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        to = data.draw(st.integers(self.committed + 1, len(self.model)), label="commit to")
        assert self.log.maybe_commit(to, self.model[to - 1].term) is True
        self.committed = to

    @rule(data=st.data())
    def commit_with_stale_term_is_refused(self, data: st.DataObject) -> None:
        if len(self.model) <= self.committed:
            assert self.log.maybe_commit(len(self.model), self.term) is False
            return
        to = data.draw(st.integers(self.committed + 1, len(self.model)), label="commit to")
        assert self.log.maybe_commit(to, self.model[to - 1].term + 1) is False
        assert self.log.committed == self.committed

    @rule()
    def apply_next(self) -> None:
        got = self.log.next_committed_ents()
        want = limit_size(self.model[self.applied : self.committed], MAX_APPLYING_SIZE)
        assert got == want
        assert self.log.has_next_committed_ents() is bool(want)
        if got:
            self.log.applied_to(got[-1].index)
            self.applied = got[-1].index

    @precondition(lambda self: self.applied > self.compacted)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        # Only applied entries that are durably in storage (not shadowed by the
        # unstable part) may be compacted.
        hi = min(self.applied, self.storage.last_index(), self.log.unstable.offset - 1)
        if hi <= self.compacted:
            return
        to = data.draw(st.integers(self.compacted + 1, hi), label="compact to")
        self.storage.compact(to)
        self.compacted = to

    @invariant()
    def log_matches_model(self) -> None:
        log, model = self.log, self.model
        last = len(model)
        assert (log.first_index(), log.last_index()) == (self.compacted + 1, last)
        assert (log.committed, log.applied) == (self.committed, self.applied)
        assert log.all_entries() == model[self.compacted :]
        dummy_term = model[self.compacted - 1].term if self.compacted else 0
        assert log.term(self.compacted) == dummy_term
        assert log.last_term() == (model[-1].term if model else dummy_term)
        assert log.zero_term_on_compacted(last + 1) == 0
        try:
            log.term(last + 1)
        except UnavailableError:
            pass
        else:
            raise AssertionError("term past the last index must raise UnavailableError")
        if self.compacted >= 1:
            assert log.zero_term_on_compacted(self.compacted - 1) == 0
            try:
                log.slice(self.compacted, last + 1)
            except CompactedError:
                pass
            else:
                raise AssertionError("slice below the first index must raise CompactedError")

    @invariant()
    def storage_below_unstable_offset_matches_model(self) -> None:
        offset = self.log.unstable.offset
        stable_hi = min(self.storage.last_index(), offset - 1)
        for i in range(self.storage.first_index(), stable_hi + 1):
            assert self.storage.term(i) == self.model[i - 1].term
        assert offset + len(self.log.unstable.entries) == len(self.model) + 1


TestRaftLogAgainstModel = RaftLogMachine.TestCase
TestRaftLogAgainstModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
