"""One group's log inside the engine: its in-memory index and its raft ``Storage`` view.

The index keeps, per group, the dummy entry (index and term of the last
compacted entry), the term of every live entry, and *runs*: where each
``ENTRIES`` record holding live entries sits in the segments. A bounded cache
of the most recent entries (the *tail*) answers the reads a leader makes of
what it just wrote without touching the disk; older entries are read back
with ``pread`` and their checksums verified.

Threading: the engine's writer thread is the only one that mutates a
``GroupLog`` (the ``apply_*``/``set_*`` methods, called with the engine lock
held), and it reads the position of a group without the lock, since nobody
else changes it. The raft ``Storage`` methods may run on any thread and take
the engine lock, so they never see half of a write.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Sequence
from operator import itemgetter
from typing import Protocol

from multiraft.raft.errors import CompactedError, UnavailableError
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
)
from storage.records import decode_entries, decode_entry_set_entry, decode_snapshot

__all__ = ["NO_SEGMENT", "GroupLog", "Location", "LogReader", "Run"]

#: Segment sequence meaning "not stored anywhere".
NO_SEGMENT = 1 << 62

#: ``(segment seq, payload offset, payload length)`` of a record.
Location = tuple[int, int, int]
#: ``(first index of the record, last live index in it, segment seq, payload offset,
#: payload length, slot)`` of an ``ENTRIES`` record (slot -1) or of one entry of an
#: ``ENTRY_SET`` record (its position in the set).
Run = tuple[int, int, int, int, int, int]

_run_first = itemgetter(0)


class LogReader(Protocol):
    """What a group log needs from its engine."""

    lock: threading.Lock
    tail_cache_entries: int

    def check_usable(self) -> None:
        """Raise if the engine is closed or failed."""
        ...

    def read_payload(self, seq: int, offset: int, length: int) -> bytes:
        """A record's payload, checksum verified (``CorruptionError`` otherwise)."""
        ...


class GroupLog:
    """A group's persisted state and its raft ``Storage`` view (``MemoryStorage`` semantics)."""

    __slots__ = (
        "_lock",
        "_reader",
        "base_seg",
        "conf_override",
        "cs_seg",
        "dummy_index",
        "dummy_term",
        "group_id",
        "hard_state",
        "hs_seg",
        "runs",
        "snap_loc",
        "snap_meta",
        "snap_seg",
        "tail",
        "terms",
    )

    def __init__(self, group_id: int, reader: LogReader) -> None:
        self.group_id = group_id
        self._reader = reader
        self._lock = reader.lock
        self.dummy_index = 0
        self.dummy_term = 0
        self.terms: list[int] = []
        self.runs: list[Run] = []
        self.tail: list[Entry] = []
        self.hard_state: HardState = EMPTY_HARD_STATE
        self.conf_override: ConfState | None = None
        self.snap_meta: SnapshotMetadata | None = None
        self.snap_loc: Location | None = None
        self.hs_seg = NO_SEGMENT
        self.cs_seg = NO_SEGMENT
        self.snap_seg = NO_SEGMENT
        self.base_seg = NO_SEGMENT

    def __repr__(self) -> str:
        return (
            f"GroupLog({self.group_id}, first={self.dummy_index + 1}, "
            f"last={self.dummy_index + len(self.terms)}, hard_state={self.hard_state})"
        )

    # -- the raft Storage protocol ---------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The hard state and membership (a conf state override, else the snapshot's)."""
        with self._lock:
            self._reader.check_usable()
            if self.conf_override is not None:
                return self.hard_state, self.conf_override
            meta = self.snap_meta
            return self.hard_state, ConfState() if meta is None else meta.conf_state

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries in ``[lo, hi)``, at most ``max_size`` bytes but at least one."""
        with self._lock:
            self._reader.check_usable()
            offset = self.dummy_index
            if lo <= offset:
                raise CompactedError(f"index {lo} is compacted (first index {offset + 1})")
            n = len(self.terms)
            last = offset + n
            if hi > last + 1:
                raise UnavailableError(f"entries' hi({hi}) is out of bound lastindex({last})")
            if n == 0:
                raise UnavailableError("the log holds no entries")
            if lo > hi:
                raise ValueError(f"invalid range [{lo}, {hi})")
            tail = self.tail
            tail_lo = last - len(tail) + 1
            if lo >= tail_lo:
                return limit_size(tail[lo - tail_lo : hi - tail_lo], max_size)
            return self._read(lo, hi, max_size, tail_lo)

    def term(self, i: int) -> int:
        """Term of entry ``i``, for ``first_index() - 1 <= i <= last_index()``."""
        with self._lock:
            self._reader.check_usable()
            offset = self.dummy_index
            if i < offset:
                raise CompactedError(f"index {i} is compacted (first index {offset + 1})")
            pos = i - offset
            if pos > len(self.terms):
                raise UnavailableError(
                    f"index {i} is past the last index {offset + len(self.terms)}"
                )
            return self.dummy_term if pos == 0 else self.terms[pos - 1]

    def last_index(self) -> int:
        """Index of the last entry (the dummy's index when the log is empty)."""
        with self._lock:
            self._reader.check_usable()
            return self.dummy_index + len(self.terms)

    def first_index(self) -> int:
        """Index of the first entry after the dummy."""
        with self._lock:
            self._reader.check_usable()
            return self.dummy_index + 1

    def snapshot(self) -> Snapshot:
        """The latest snapshot, read back from the log (the empty one if none)."""
        with self._lock:
            self._reader.check_usable()
            loc = self.snap_loc
            if loc is None:
                return EMPTY_SNAPSHOT
            meta, data = decode_snapshot(self._reader.read_payload(*loc))
            return Snapshot(meta, data)

    def _read(self, lo: int, hi: int, max_size: int, tail_lo: int) -> list[Entry]:
        out: list[Entry] = []
        size = 0
        runs = self.runs
        k = bisect_right(runs, lo, key=_run_first) - 1
        i = lo
        disk_hi = min(hi, tail_lo)
        while i < disk_hi:
            _, run_last, seq, poff, plen, slot = runs[k]
            stop = min(disk_hi, run_last + 1)
            payload = self._reader.read_payload(seq, poff, plen)
            if slot >= 0:
                one = decode_entry_set_entry(payload, slot)
                got, sizes = [one], [len(one.data) + 16]
            else:
                got, sizes = decode_entries(payload, i, stop)
            for e, sz in zip(got, sizes, strict=True):
                size += sz
                if size > max_size and out:
                    return out
                out.append(e)
            i = stop
            k += 1
        if hi > tail_lo:
            for e in self.tail[i - tail_lo : hi - tail_lo]:
                size += e.size()
                if size > max_size and out:
                    return out
                out.append(e)
        return out

    # -- position, for planning writes (writer thread, no lock) -------------

    def snapshot_index(self) -> int:
        """Index of the stored snapshot (0 when none)."""
        meta = self.snap_meta
        return 0 if meta is None else meta.index

    def dummy(self) -> tuple[int, int]:
        """Index and term of the dummy entry."""
        return self.dummy_index, self.dummy_term

    def last(self) -> int:
        """Index of the last entry."""
        return self.dummy_index + len(self.terms)

    def stored_term(self, i: int) -> int:
        """Term of entry ``i`` (``dummy index <= i <= last``)."""
        pos = i - self.dummy_index
        return self.dummy_term if pos == 0 else self.terms[pos - 1]

    def all_entries(self) -> list[Entry]:
        """Every live entry (for rewriting them forward; writer thread only)."""
        n = len(self.terms)
        if n == 0:
            return []
        last = self.dummy_index + n
        return self._read(self.dummy_index + 1, last + 1, NO_LIMIT, last - len(self.tail) + 1)

    def min_segment(self) -> int:
        """The oldest segment holding a record this group still needs."""
        m = min(self.hs_seg, self.cs_seg, self.snap_seg, self.base_seg)
        if self.runs:
            m = min(m, self.runs[0][2])
        return m

    def live_bytes(self) -> int:
        """Bytes of the records this group still needs (an estimate for garbage collection)."""
        # An entry of a set record shares the record with other groups: count a
        # share of it rather than the whole (the data size is not kept in memory).
        n = sum(r[4] if r[5] < 0 else min(r[4], 256) for r in self.runs) + 64
        if self.snap_loc is not None:
            n += self.snap_loc[2]
        return n

    # -- mutations (writer thread or recovery, engine lock held) --------------

    def apply_snapshot(self, meta: SnapshotMetadata, loc: Location) -> None:
        """An incoming snapshot replaces the log and the conf state override."""
        self.dummy_index = meta.index
        self.dummy_term = meta.term
        self.terms = []
        self.runs = []
        self.tail = []
        self.snap_meta = meta
        self.snap_loc = loc
        self.conf_override = None
        self.snap_seg = self.base_seg = loc[0]
        self.cs_seg = NO_SEGMENT

    def truncate(self, last_kept: int) -> None:
        """Drop the entries after ``last_kept``."""
        old_last = self.dummy_index + len(self.terms)
        del self.terms[last_kept - self.dummy_index :]
        runs = self.runs
        k = bisect_right(runs, last_kept, key=_run_first)
        del runs[k:]
        if runs and runs[-1][1] > last_kept:
            first, _, seq, poff, plen, slot = runs[-1]
            runs[-1] = (first, last_kept, seq, poff, plen, slot)
        tail = self.tail
        keep = last_kept - (old_last - len(tail))
        if keep <= 0:
            self.tail = []
        else:
            del tail[keep:]

    def append(
        self, first: int, terms: list[int], entries: Sequence[Entry] | None, loc: Location
    ) -> None:
        """Append entries ``first..`` (``first`` is right after the last entry)."""
        self.terms.extend(terms)
        n = len(terms)
        self.runs.append((first, first + n - 1, loc[0], loc[1], loc[2], -1))
        if entries is None:
            if self.tail:
                self.tail = []
            return
        tail = self.tail
        tail.extend(entries)
        cap = self._reader.tail_cache_entries
        if len(tail) > cap + (cap >> 1):
            del tail[: len(tail) - max(cap, n)]

    def append_one(self, entry: Entry, seq: int, poff: int, plen: int, slot: int) -> None:
        """Append one entry held at ``slot`` of an ``ENTRY_SET`` record (the hot path)."""
        index = entry.index
        self.terms.append(entry.term)
        self.runs.append((index, index, seq, poff, plen, slot))
        tail = self.tail
        tail.append(entry)
        cap = self._reader.tail_cache_entries
        if len(tail) > cap + (cap >> 1):
            del tail[: len(tail) - max(cap, 1)]

    def set_hard_state(self, hs: HardState, seq: int) -> None:
        """Record the hard state."""
        self.hard_state = hs
        self.hs_seg = seq

    def set_conf_state(self, cs: ConfState, seq: int) -> None:
        """Record the membership override."""
        self.conf_override = cs
        self.cs_seg = seq

    def store_snapshot(self, meta: SnapshotMetadata, loc: Location) -> None:
        """Record a snapshot of the node's own log (the log stays)."""
        self.snap_meta = meta
        self.snap_loc = loc
        self.snap_seg = loc[0]

    def compact(self, index: int, term: int, seq: int) -> None:
        """Entry ``index`` becomes the dummy entry."""
        old_last = self.dummy_index + len(self.terms)
        del self.terms[: index - self.dummy_index]
        self.dummy_index = index
        self.dummy_term = term
        runs = self.runs
        k = bisect_right(runs, index, key=itemgetter(1))
        del runs[:k]
        tail = self.tail
        drop = index - (old_last - len(tail))
        if drop > 0:
            del tail[:drop]
        self.base_seg = seq

    def reset(
        self,
        dummy_index: int,
        dummy_term: int,
        hs: HardState,
        conf_override: ConfState | None,
        seq: int,
    ) -> None:
        """Replace everything (garbage collection rewrote the group forward)."""
        self.dummy_index = dummy_index
        self.dummy_term = dummy_term
        self.terms = []
        self.runs = []
        self.tail = []
        self.hard_state = hs
        self.conf_override = conf_override
        self.snap_meta = None
        self.snap_loc = None
        self.hs_seg = self.base_seg = seq
        self.cs_seg = NO_SEGMENT if conf_override is None else seq
        self.snap_seg = NO_SEGMENT

    def rebase(self, dummy_index: int, dummy_term: int, seq: int) -> None:
        """Empty the log and put its dummy entry at ``dummy_index`` (recovery only)."""
        self.dummy_index = dummy_index
        self.dummy_term = dummy_term
        self.terms = []
        self.runs = []
        self.tail = []
        self.base_seg = seq

    def clear(self) -> None:
        """Forget everything (the group was removed)."""
        self.reset(0, 0, EMPTY_HARD_STATE, None, NO_SEGMENT)
