"""The unstable tail of a raft log: entries and a snapshot not yet persisted.

Everything the raft state machine appends lands here first. Once the
application has written a prefix of it to stable storage (``Ready`` then
``advance``), the raft log drops that prefix with :meth:`Unstable.stable_to`.
``entries[i]`` has index ``offset + i``; ``offset`` can be below the storage's
last index when a new leader overwrote a stable suffix that is not yet
persisted again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from multiraft.raft.types import Entry, Snapshot

__all__ = ["Unstable"]

_default_logger = logging.getLogger("multiraft.raft")

#: What an empty tail holds: an idle group's log is fully persisted nearly all
#: the time, and a list per group would be one more object for the garbage
#: collector to visit on every full collection.
_NO_ENTRIES: tuple[Entry, ...] = ()


class Unstable:
    """Entries (and possibly a snapshot) waiting to be written to stable storage."""

    __slots__ = ("entries", "logger", "offset", "snapshot")

    snapshot: Snapshot | None
    #: A list while entries wait, the shared empty tuple otherwise.
    entries: list[Entry] | tuple[Entry, ...]
    offset: int
    logger: logging.Logger

    def __init__(
        self,
        offset: int = 0,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.entries = list(entries) if entries else _NO_ENTRIES
        self.offset = offset
        self.logger = logger if logger is not None else _default_logger

    def __repr__(self) -> str:
        snap = None if self.snapshot is None else self.snapshot.metadata.index
        return f"Unstable(offset={self.offset}, entries={len(self.entries)}, snapshot={snap})"

    def maybe_first_index(self) -> int | None:
        """The first log index when an unstable snapshot exists, else None."""
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        """The last index of the unstable entries, or of the snapshot, else None."""
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        """The term of entry ``i`` if the unstable part knows it, else None."""
        if i < self.offset:
            snap = self.snapshot
            if snap is not None and snap.metadata.index == i:
                return snap.metadata.term
            return None
        pos = i - self.offset
        if pos >= len(self.entries):
            return None
        return self.entries[pos].term

    def stable_to(self, i: int, t: int) -> None:
        """Forget entries up to ``i`` now persisted, if ``i`` still has term ``t``.

        A mismatched term means the entry was replaced after the write began, so
        the newer entry is still unstable and must be kept. Indexes below
        ``offset`` only ever match the snapshot, which this does not touch.
        """
        gt = self.maybe_term(i)
        if gt is None or gt != t or i < self.offset:
            return
        # Rebind rather than delete in place: a Ready may still hold the old list.
        self.entries = self.entries[i + 1 - self.offset :] or _NO_ENTRIES
        self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        """Forget the unstable snapshot once the snapshot at ``i`` is persisted."""
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, snap: Snapshot) -> None:
        """Replace everything with ``snap``; the log restarts right after it."""
        self.offset = snap.metadata.index + 1
        self.entries = _NO_ENTRIES
        self.snapshot = snap

    def truncate_and_append(self, ents: Sequence[Entry]) -> None:
        """Append ``ents``, first dropping any unstable entries at or after ``ents[0]``."""
        if not ents:
            return
        after = ents[0].index
        entries = self.entries
        if after == self.offset + len(entries):
            if isinstance(entries, list):
                entries.extend(ents)
            else:
                self.entries = list(ents)
        elif after <= self.offset:
            # Every unstable entry is replaced; stable entries from ``after`` on are
            # shadowed until the new ones are persisted over them.
            self.logger.info("replace the unstable entries from index %d", after)
            self.offset = after
            self.entries = list(ents)
        else:
            self.logger.info("truncate the unstable entries before index %d", after)
            kept = self.slice(self.offset, after)
            kept.extend(ents)
            self.entries = kept

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """A copy of the entries in ``[lo, hi)``; the range must lie inside the unstable part."""
        self.must_check_out_of_bounds(lo, hi)
        entries = self.entries
        if not isinstance(entries, list):
            return []
        return entries[lo - self.offset : hi - self.offset]

    def must_check_out_of_bounds(self, lo: int, hi: int) -> None:
        """Raise AssertionError unless ``offset <= lo <= hi <= offset + len(entries)``."""
        if lo > hi:
            raise AssertionError(f"invalid unstable.slice {lo} > {hi}")
        upper = self.offset + len(self.entries)
        if lo < self.offset or hi > upper:
            raise AssertionError(f"unstable.slice[{lo},{hi}) out of bound [{self.offset},{upper}]")
