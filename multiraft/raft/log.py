"""The raft log: stable storage plus the unstable tail, with commit and apply cursors.

Indexes satisfy ``first_index() - 1 <= applied <= committed <= last_index()``.
Entry ``first_index() - 1`` is the "dummy" entry: compacted away, but its term is
still known so that appends right after a snapshot can be matched.

Caller bugs (what etcd raft panics on) raise ``AssertionError``; storage errors
that the raft state machine is expected to handle (``CompactedError``,
``UnavailableError``) propagate as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from multiraft.raft.errors import CompactedError, StorageError, UnavailableError
from multiraft.raft.storage import NO_LIMIT, Storage
from multiraft.raft.types import Entry, Snapshot
from multiraft.raft.unstable import Unstable

__all__ = ["RaftLog", "limit_size"]

_default_logger = logging.getLogger("multiraft.raft")


def limit_size(ents: list[Entry], max_size: int) -> list[Entry]:
    """The longest prefix of ``ents`` within ``max_size`` bytes, but at least one entry.

    Returns ``ents`` itself when nothing has to be cut.
    """
    n = len(ents)
    if n <= 1 or max_size >= NO_LIMIT:
        return ents
    size = ents[0].size()
    for i in range(1, n):
        size += ents[i].size()
        if size > max_size:
            return ents[:i]
    return ents


class RaftLog:
    """The log of one raft member (etcd's ``raftLog``)."""

    __slots__ = ("applied", "committed", "logger", "max_applying_size", "storage", "unstable")

    storage: Storage
    unstable: Unstable
    committed: int
    applied: int
    logger: logging.Logger
    max_applying_size: int

    def __init__(
        self,
        storage: Storage,
        logger: logging.Logger | None = None,
        max_applying_size: int = NO_LIMIT,
    ) -> None:
        self.storage = storage
        self.logger = logger if logger is not None else _default_logger
        self.max_applying_size = max_applying_size
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(offset=last + 1, logger=self.logger)
        # Everything up to the last compaction is known committed and applied.
        self.committed = first - 1
        self.applied = first - 1

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, "
            f"len(unstable.entries)={len(self.unstable.entries)})"
        )

    # -- appending -------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: Sequence[Entry]
    ) -> int | None:
        """Append a leader's ``ents`` that follow entry (``index``, ``log_term``).

        Returns the index of the last new entry, or None when this log has no
        entry ``index`` with term ``log_term``. Entries already present are kept;
        from the first conflicting one on, the log is replaced. Commits up to
        ``min(committed, last new index)``.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise AssertionError(
                    f"entry {ci} conflict with committed entry [committed({self.committed})]"
                )
            start = ci - (index + 1)
            if start > len(ents):
                raise AssertionError(f"index, {start}, is out of range [{len(ents)}]")
            self.append(ents[start:])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: Sequence[Entry]) -> int:
        """Append ``ents`` (replacing any suffix from ``ents[0].index``); the new last index."""
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"after({after}) is out of range [committed({self.committed})]")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """Index of the first of ``ents`` that is not in this log, or 0 if all are.

        That is the first entry whose index is past the end or whose term differs
        from ours. ``ents`` must have contiguous, increasing indexes.
        """
        last = self.last_index()
        for ne in ents:
            if ne.index > last:
                # Past our end: new, not conflicting. Checked first because it is
                # the common case and term() would raise UnavailableError for it.
                return ne.index
            if not self.match_term(ne.index, ne.term):
                self.logger.info(
                    "found conflict at index %d [existing term: %d, conflicting term: %d]",
                    ne.index,
                    self.zero_term_on_compacted(ne.index),
                    ne.term,
                )
                return ne.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index ``<= index`` whose term is ``<= term``, with that term.

        Used to answer a rejected append with a hint that skips a whole run of
        divergent entries. An index whose term is unknown (compacted away or
        not stored) could still match, so it is returned with term 0.
        """
        while index > 0:
            try:
                our_term = self.term(index)
            except StorageError:
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    # -- reading pending work -------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        """A copy of the entries not yet handed to stable storage."""
        return list(self.unstable.entries)

    def next_committed_ents(self) -> list[Entry]:
        """Committed entries not yet applied, at most ``max_applying_size`` bytes (at least one)."""
        off = max(self.applied + 1, self.first_index())
        if self.committed + 1 > off:
            try:
                return self.slice(off, self.committed + 1, self.max_applying_size)
            except StorageError as err:
                raise AssertionError(
                    f"unexpected error when getting unapplied entries ({err!r})"
                ) from err
        return []

    def has_next_committed_ents(self) -> bool:
        """True when :meth:`next_committed_ents` would return something (cheap check)."""
        return self.committed + 1 > max(self.applied + 1, self.first_index())

    def has_pending_snapshot(self) -> bool:
        """True when a non-empty snapshot waits to be persisted."""
        snap = self.unstable.snapshot
        return snap is not None and not snap.is_empty()

    def snapshot(self) -> Snapshot:
        """The unstable snapshot if there is one, else the storage's."""
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    # -- indexes and terms ----------------------------------------------

    def first_index(self) -> int:
        """Index of the first entry still in the log."""
        # Inlined Unstable.maybe_first_index: this runs several times per message.
        snap = self.unstable.snapshot
        if snap is not None:
            return snap.metadata.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        """Index of the last entry in the log."""
        # Inlined Unstable.maybe_last_index: the hottest call of the raft core.
        unstable = self.unstable
        entries = unstable.entries
        if entries:
            return unstable.offset + len(entries) - 1
        snap = unstable.snapshot
        if snap is not None:
            return snap.metadata.index
        return self.storage.last_index()

    def last_term(self) -> int:
        """Term of the last entry."""
        try:
            return self.term(self.last_index())
        except StorageError as err:
            raise AssertionError(f"unexpected error when getting the last term ({err!r})") from err

    def term(self, i: int) -> int:
        """Term of entry ``i``, valid for ``first_index() - 1 <= i <= last_index()``.

        Raises ``CompactedError`` below that range and ``UnavailableError`` above it
        (an append claiming to follow an entry we do not have must not match), and
        passes on storage errors.
        """
        # The unstable tail answers most lookups (the leader reading what it just
        # appended), so it is checked before computing the valid range.
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        if i < self.first_index() - 1:
            raise CompactedError(f"entry {i} is compacted (first index {self.first_index()})")
        if i > self.last_index():
            raise UnavailableError(f"entry {i} is past the last index {self.last_index()}")
        return self.storage.term(i)

    def zero_term_on_compacted(self, i: int) -> int:
        """Term of entry ``i``, or 0 when it is out of the log's bounds."""
        try:
            return self.term(i)
        except (CompactedError, UnavailableError):
            return 0
        except StorageError as err:
            raise AssertionError(f"unexpected error ({err!r})") from err

    def match_term(self, i: int, term: int) -> bool:
        """True when entry ``i`` exists here with term ``term``."""
        try:
            return self.term(i) == term
        except StorageError:
            return False

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """True when a log ending at (``lasti``, ``term``) is at least as recent as ours."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and lasti >= self.last_index())

    # -- cursors ----------------------------------------------------------

    def commit_to(self, tocommit: int) -> None:
        """Raise the commit index to ``tocommit`` (never lowers it)."""
        if self.committed < tocommit:
            last = self.last_index()
            if last < tocommit:
                raise AssertionError(
                    f"tocommit({tocommit}) is out of range [lastIndex({last})]. "
                    "Was the raft log corrupted, truncated, or lost?"
                )
            self.committed = tocommit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` if that entry is from ``term``; whether it did.

        A leader only commits entries of its own term by counting replicas.
        Term 0 never matches: no leader has it, and unknown terms read as 0.
        """
        if (
            max_index > self.committed
            and term != 0
            and self.zero_term_on_compacted(max_index) == term
        ):
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        """Record that entries up to ``i`` are applied (0 means no news)."""
        if i == 0:
            return
        if self.committed < i or i < self.applied:
            raise AssertionError(
                f"applied({i}) is out of range [prevApplied({self.applied}), "
                f"committed({self.committed})]"
            )
        self.applied = i

    def stable_to(self, i: int, t: int) -> None:
        """Entries up to (``i``, ``t``) were persisted."""
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        """The snapshot at ``i`` was persisted."""
        self.unstable.stable_snap_to(i)

    def restore(self, snap: Snapshot) -> None:
        """Reset the log to ``snap``, which is committed by definition."""
        self.logger.info(
            "log [%r] starts to restore snapshot [index: %d, term: %d]",
            self,
            snap.metadata.index,
            snap.metadata.term,
        )
        self.committed = snap.metadata.index
        self.unstable.restore(snap)

    # -- reading entries -------------------------------------------------

    def entries(self, i: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries from ``i`` to the end, at most ``max_size`` bytes (at least one)."""
        last = self.last_index()
        if i > last:
            return []
        return self.slice(i, last + 1, max_size)

    def all_entries(self) -> list[Entry]:
        """Every entry still in the log."""
        return self.entries(self.first_index())

    def slice(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries in ``[lo, hi)``, at most ``max_size`` bytes but at least one.

        Raises ``CompactedError`` if ``lo`` is compacted away.
        """
        self.must_check_out_of_bounds(lo, hi)
        if lo == hi:
            return []
        offset = self.unstable.offset
        ents: list[Entry] = []
        if lo < offset:
            stable_hi = min(hi, offset)
            try:
                ents = self.storage.entries(lo, stable_hi, max_size)
            except UnavailableError as err:
                raise AssertionError(
                    f"entries[{lo}:{stable_hi}) is unavailable from storage"
                ) from err
            if len(ents) < stable_hi - lo:
                # Storage already cut the range at max_size.
                return ents
        if hi > offset:
            tail = self.unstable.slice(max(lo, offset), hi)
            ents = ents + tail if ents else tail
        return limit_size(ents, max_size)

    def must_check_out_of_bounds(self, lo: int, hi: int) -> None:
        """Check ``first_index() <= lo <= hi <= last_index() + 1``.

        ``lo`` below the first index raises ``CompactedError``; anything else
        out of range is a caller bug (AssertionError).
        """
        if lo > hi:
            raise AssertionError(f"invalid slice {lo} > {hi}")
        fi = self.first_index()
        if lo < fi:
            raise CompactedError(f"index {lo} is compacted (first index {fi})")
        last = self.last_index()
        if hi > last + 1:
            raise AssertionError(f"slice[{lo},{hi}) out of bound [{fi},{last}]")
