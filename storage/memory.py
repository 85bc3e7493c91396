"""An in-memory raft log with etcd's ``MemoryStorage`` semantics, for tests and simulation.

The log is kept as a list whose first element is a "dummy" entry: it holds the
index and term of the last compacted entry (index 0 and term 0 for a fresh
log), so ``term()`` can answer for the entry right before the first one.

A short log (at most ``_SHORT_LOG`` entries) is never changed in place, only
replaced: equal short logs without command data (a new group's log, with the
empty entry of its first leader) are then one list shared by every storage
holding one, so an idle group of a node hosting thousands keeps no log of its
own, and none allocated while it was busy.

Not thread-safe: one writer, and readers on the same thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from multiraft.raft.errors import CompactedError, SnapOutOfDateError, UnavailableError
from multiraft.raft.interning import InternTable
from multiraft.raft.log import limit_size
from multiraft.raft.storage import NO_LIMIT
from multiraft.raft.types import (
    EMPTY_HARD_STATE,
    EMPTY_SNAPSHOT,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMetadata,
    shared_hard_state,
)

__all__ = ["MemoryStorage"]

#: The dummy entry of every log that was never compacted (entries are immutable).
_ORIGIN = Entry(term=0, index=0)

#: Dummy entries shared between the logs that hold equal ones (groups created
#: together start from the same snapshot): an idle group keeps none of its own.
_DUMMIES: InternTable[tuple[int, int], Entry] = InternTable()

#: Logs up to this many entries (dummy included) are rebuilt at their exact size
#: when appended to: a list grown in place reserves room for entries that the
#: short log of a new or idle group never gets. Being never changed in place,
#: they may be shared.
_SHORT_LOG = 8

#: Short logs without command data, by the (term, index, type) of their entries.
_SHARED_LOGS: InternTable[tuple[tuple[int, int, int], ...], list[Entry]] = InternTable()


def _dummy(term: int, index: int) -> Entry:
    key = (term, index)
    known = _DUMMIES.get(key)
    return known if known is not None else _DUMMIES.add(key, Entry(term=term, index=index))


def _short_log(ents: list[Entry]) -> list[Entry]:
    """``ents`` (a new list of at most ``_SHORT_LOG`` entries), or the equal shared
    list if no entry carries data. The result must never be changed in place."""
    for e in ents:
        if e.data:
            return ents
    key = tuple((e.term, e.index, int(e.type)) for e in ents)
    known = _SHARED_LOGS.get(key)
    return known if known is not None else _SHARED_LOGS.add(key, ents)


class MemoryStorage:
    """The raft ``Storage`` protocol backed by a list, plus the calls that write it.

    Membership: ``initial_state()`` reports the conf state of the latest
    snapshot, unless :meth:`set_conf_state` recorded a newer one (the
    coordinator persists membership there when it applies a conf change).
    Applying an incoming snapshot replaces that override with the snapshot's
    conf state; a snapshot the node creates itself does not, because it
    describes a point no later than what the node has applied.
    """

    __slots__ = ("_conf_state", "_ents", "_hard_state", "_snapshot")

    def __init__(self) -> None:
        self._hard_state: HardState = EMPTY_HARD_STATE
        self._snapshot: Snapshot = EMPTY_SNAPSHOT
        self._conf_state: ConfState | None = None
        self._ents: list[Entry] = _short_log([_ORIGIN])

    def __repr__(self) -> str:
        return (
            f"MemoryStorage(first={self.first_index()}, last={self.last_index()}, "
            f"snapshot={self._snapshot.metadata.index}, hard_state={self._hard_state})"
        )

    # -- the Storage protocol ---------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The stored hard state and the current membership."""
        if self._conf_state is not None:
            return self._hard_state, self._conf_state
        return self._hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries in ``[lo, hi)``, at most ``max_size`` bytes but at least one.

        ``CompactedError`` if ``lo`` is at or below the dummy entry;
        ``UnavailableError`` if ``hi`` is past ``last_index() + 1`` or the log
        holds no entries at all.
        """
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError(f"index {lo} is compacted (first index {offset + 1})")
        last = offset + len(self._ents) - 1
        if hi > last + 1:
            raise UnavailableError(f"entries' hi({hi}) is out of bound lastindex({last})")
        if len(self._ents) == 1:
            raise UnavailableError("the log holds no entries")
        if lo > hi:
            raise ValueError(f"invalid range [{lo}, {hi})")
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, i: int) -> int:
        """Term of entry ``i``, for ``first_index() - 1 <= i <= last_index()``."""
        offset = self._ents[0].index
        if i < offset:
            raise CompactedError(f"index {i} is compacted (first index {offset + 1})")
        pos = i - offset
        if pos >= len(self._ents):
            raise UnavailableError(f"index {i} is past the last index {self.last_index()}")
        return self._ents[pos].term

    def last_index(self) -> int:
        """Index of the last entry (the dummy's index when the log is empty)."""
        return self._ents[0].index + len(self._ents) - 1

    def first_index(self) -> int:
        """Index of the first entry after the dummy."""
        return self._ents[0].index + 1

    def snapshot(self) -> Snapshot:
        """The latest snapshot (the empty one until a snapshot is applied or created)."""
        return self._snapshot

    # -- writing -----------------------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        """Store the hard state (an equal one already shared is kept instead)."""
        self._hard_state = shared_hard_state(hs)

    def set_conf_state(self, cs: ConfState) -> None:
        """Record the current membership, reported by ``initial_state()`` from now on."""
        self._conf_state = cs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log with ``snap``; ``SnapOutOfDateError`` if not newer."""
        current = self._snapshot.metadata.index
        if current >= snap.metadata.index:
            raise SnapOutOfDateError(f"snapshot {snap.metadata.index} is not newer than {current}")
        self._snapshot = snap
        self._conf_state = None
        self._ents = _short_log([_dummy(snap.metadata.term, snap.metadata.index)])

    def create_snapshot(
        self, index: int, conf_state: ConfState | None = None, data: bytes = b""
    ) -> Snapshot:
        """Record a snapshot at ``index`` (keeping the log) and return it.

        Without ``conf_state`` the previous snapshot's membership is kept.
        ``SnapOutOfDateError`` if ``index`` is not newer than the current
        snapshot, ``CompactedError`` if it is compacted, ``ValueError`` if it is
        past the last index.
        """
        self._check_snapshot_index(index)
        term = self._ents[index - self._ents[0].index].term
        if conf_state is None:
            conf_state = self._snapshot.metadata.conf_state
        self._snapshot = Snapshot(SnapshotMetadata(conf_state, index, term), data)
        return self._snapshot

    def store_snapshot(self, snap: Snapshot) -> None:
        """Record a snapshot the node made of its own log, keeping the log.

        Errors as :meth:`create_snapshot`, plus ``ValueError`` if the snapshot's
        term is not the term of its index in this log.
        """
        index = snap.metadata.index
        self._check_snapshot_index(index)
        term = self._ents[index - self._ents[0].index].term
        if term != snap.metadata.term:
            raise ValueError(
                f"snapshot at index {index} has term {snap.metadata.term}, the log has {term}"
            )
        self._snapshot = snap

    def _check_snapshot_index(self, index: int) -> None:
        if index <= self._snapshot.metadata.index:
            raise SnapOutOfDateError(
                f"snapshot {index} is not newer than {self._snapshot.metadata.index}"
            )
        offset = self._ents[0].index
        if index < offset:
            raise CompactedError(f"snapshot {index} is compacted (first index {offset + 1})")
        last = self.last_index()
        if index > last:
            raise ValueError(f"snapshot {index} is out of bound lastindex({last})")

    def compact(self, index: int) -> None:
        """Drop entries before ``index``; entry ``index`` becomes the dummy entry.

        ``CompactedError`` if ``index`` is at or below the current dummy entry,
        ``ValueError`` if it is past the last index.
        """
        offset = self._ents[0].index
        if index <= offset:
            raise CompactedError(f"index {index} is already compacted (dummy index {offset})")
        last = self.last_index()
        if index > last:
            raise ValueError(f"compact {index} is out of bound lastindex({last})")
        pos = index - offset
        kept = [_dummy(self._ents[pos].term, index)]
        kept.extend(self._ents[pos + 1 :])
        self._ents = _short_log(kept) if len(kept) <= _SHORT_LOG else kept

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries``, replacing the stored suffix from ``entries[0].index``.

        Entries already compacted away are skipped. ``ValueError`` if the
        entries would leave a gap after the last index.
        """
        if not entries:
            return
        first = self.first_index()
        start = entries[0].index
        if start + len(entries) - 1 < first:
            return
        if start < first:
            entries = entries[first - start :]
            start = first
        pos = start - self._ents[0].index
        if pos > len(self._ents):
            raise ValueError(f"missing log entry [last: {self.last_index()}, append at: {start}]")
        ents = self._ents
        if len(ents) <= _SHORT_LOG or pos + len(entries) <= _SHORT_LOG:
            # A short log may be shared: replaced, never changed in place.
            new = ents[:pos] + list(entries)
            self._ents = _short_log(new) if len(new) <= _SHORT_LOG else new
        else:
            ents[pos:] = entries
