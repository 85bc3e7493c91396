"""A log engine on SQLite: the reference the segment engine is checked against.

Every group write goes through the same rules (:mod:`storage.group_rules`) and
the whole batch commits in one SQLite transaction (WAL, ``synchronous=FULL``:
one durable commit per batch). It keeps nothing in memory, so each read is a
query; it is simple rather than fast, which is what a reference should be.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from multiraft.codec import decode, encode
from multiraft.ports import WriteBatch
from multiraft.raft.errors import CompactedError, UnavailableError
from multiraft.raft.log import limit_size
from multiraft.raft.storage import NO_LIMIT
from multiraft.raft.types import (
    EMPTY_SNAPSHOT,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMetadata,
)
from storage.errors import EngineClosedError
from storage.group_rules import GroupPlan, plan_group_write

__all__ = ["SqliteGroupView", "SqliteLogEngine"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS groups (
        group_id INTEGER PRIMARY KEY,
        dummy_index INTEGER NOT NULL DEFAULT 0, dummy_term INTEGER NOT NULL DEFAULT 0,
        hs_term INTEGER NOT NULL DEFAULT 0, hs_vote INTEGER NOT NULL DEFAULT 0,
        hs_commit INTEGER NOT NULL DEFAULT 0,
        conf_state BLOB, snap_meta BLOB, snap_data BLOB)""",
    """CREATE TABLE IF NOT EXISTS entries (
        group_id INTEGER NOT NULL, idx INTEGER NOT NULL, term INTEGER NOT NULL,
        type INTEGER NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY (group_id, idx)) WITHOUT ROWID""",
)
_ENTRY_TYPES = tuple(EntryType)


class SqliteLogEngine:
    """The ``LogEngine`` port over one SQLite database. ``writes == syncs`` (one commit each)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for stmt in _SCHEMA:
            self._db.execute(stmt)
        self._closed = False
        self.writes = 0
        self.syncs = 0

    @classmethod
    def open(cls, path: str) -> SqliteLogEngine:
        """Open (or create) the database file at ``path`` (``":memory:"`` for a throwaway one)."""
        return cls(path)

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError("the log engine is closed")

    def storage(self, group_id: int) -> SqliteGroupView:
        """The raft ``Storage`` view of ``group_id``."""
        self._check_open()
        return SqliteGroupView(self, group_id)

    def group_ids(self) -> list[int]:
        """Groups written at least once and not removed, ascending."""
        with self._lock:
            self._check_open()
            rows = self._db.execute("SELECT group_id FROM groups ORDER BY group_id").fetchall()
        return [int(r[0]) for r in rows]

    def write(self, batch: WriteBatch) -> None:
        """Check every group's write, then apply them all in one transaction."""
        with self._lock:
            self._check_open()
            if not batch.groups:
                return
            ids = [gw.group_id for gw in batch.groups]
            if len(set(ids)) != len(ids):
                raise ValueError("a group appears twice in one write batch")
            positions = self._positions(ids)
            plans = [plan_group_write(gw, positions[gw.group_id]) for gw in batch.groups]
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for plan in plans:
                    self._apply(plan)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self.writes += 1
            self.syncs += 1

    def _positions(self, ids: list[int]) -> dict[int, _Position]:
        """Where each group's log stands, read with two queries for the whole batch."""
        out = {gid: _Position(SqliteGroupView(self, gid), 0, 0, 0, 0) for gid in ids}
        marks = ",".join("?" * len(ids))
        for gid, dummy_index, dummy_term, meta in self._db.execute(
            f"SELECT group_id, dummy_index, dummy_term, snap_meta FROM groups "
            f"WHERE group_id IN ({marks})",
            ids,
        ):
            p = out[gid]
            p.dummy_index, p.dummy_term, p.last_index = dummy_index, dummy_term, dummy_index
            if meta is not None:
                p.snap_index = decode(bytes(meta), SnapshotMetadata).index
        for gid, top in self._db.execute(
            f"SELECT group_id, max(idx) FROM entries WHERE group_id IN ({marks}) GROUP BY group_id",
            ids,
        ):
            out[gid].last_index = top
        return out

    def _apply(self, plan: GroupPlan) -> None:
        db = self._db
        gid = plan.group_id
        db.execute("INSERT OR IGNORE INTO groups (group_id) VALUES (?)", (gid,))
        if plan.snapshot is not None:
            meta = plan.snapshot.metadata
            db.execute("DELETE FROM entries WHERE group_id=?", (gid,))
            db.execute(
                "UPDATE groups SET dummy_index=?, dummy_term=?, snap_meta=?, snap_data=?, "
                "conf_state=NULL WHERE group_id=?",
                (meta.index, meta.term, encode(meta), plan.snapshot.data, gid),
            )
        if plan.truncate_after is not None:
            db.execute("DELETE FROM entries WHERE group_id=? AND idx>?", (gid, plan.truncate_after))
        if plan.entries:
            db.executemany(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?)",
                [(gid, e.index, e.term, int(e.type), e.data) for e in plan.entries],
            )
        hs = plan.hard_state
        if hs is not None:
            db.execute(
                "UPDATE groups SET hs_term=?, hs_vote=?, hs_commit=? WHERE group_id=?",
                (hs.term, hs.vote, hs.commit, gid),
            )
        if plan.conf_state is not None:
            db.execute(
                "UPDATE groups SET conf_state=? WHERE group_id=?", (encode(plan.conf_state), gid)
            )
        stored = plan.stored_snapshot
        if stored is not None:
            db.execute(
                "UPDATE groups SET snap_meta=?, snap_data=? WHERE group_id=?",
                (encode(stored.metadata), stored.data, gid),
            )
        if plan.compact_to:
            db.execute("DELETE FROM entries WHERE group_id=? AND idx<=?", (gid, plan.compact_to))
            db.execute(
                "UPDATE groups SET dummy_index=?, dummy_term=? WHERE group_id=?",
                (plan.compact_to, plan.compact_term, gid),
            )

    def remove_group(self, group_id: int) -> None:
        """Drop all state of ``group_id`` in one transaction."""
        with self._lock:
            self._check_open()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM entries WHERE group_id=?", (group_id,))
            db.execute("DELETE FROM groups WHERE group_id=?", (group_id,))
            db.execute("COMMIT")
            self.writes += 1
            self.syncs += 1

    def close(self) -> None:
        """Close the database; later calls raise :class:`EngineClosedError`."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _query(self, sql: str, args: tuple[int, ...]) -> list[Any]:
        with self._lock:
            self._check_open()
            return self._db.execute(sql, args).fetchall()


class _Position:
    """A group's position before a write (``storage.group_rules.GroupPosition``)."""

    __slots__ = ("dummy_index", "dummy_term", "last_index", "snap_index", "view")

    def __init__(
        self, view: SqliteGroupView, dummy_index: int, dummy_term: int, last: int, snap: int
    ) -> None:
        self.view = view
        self.dummy_index = dummy_index
        self.dummy_term = dummy_term
        self.last_index = last
        self.snap_index = snap

    def snapshot_index(self) -> int:
        return self.snap_index

    def dummy(self) -> tuple[int, int]:
        return self.dummy_index, self.dummy_term

    def last(self) -> int:
        return self.last_index

    def stored_term(self, i: int) -> int:
        return self.view.stored_term(i)


class SqliteGroupView:
    """One group's raft ``Storage`` view over :class:`SqliteLogEngine` (queries every time)."""

    __slots__ = ("_engine", "group_id")

    def __init__(self, engine: SqliteLogEngine, group_id: int) -> None:
        self._engine = engine
        self.group_id = group_id

    def _row(self) -> Any:
        rows = self._engine._query(
            "SELECT dummy_index, dummy_term, hs_term, hs_vote, hs_commit, conf_state, snap_meta "
            "FROM groups WHERE group_id=?",
            (self.group_id,),
        )
        return rows[0] if rows else (0, 0, 0, 0, 0, None, None)

    def dummy(self) -> tuple[int, int]:
        """Index and term of the dummy entry."""
        row = self._row()
        return int(row[0]), int(row[1])

    def last(self) -> int:
        """Index of the last entry."""
        rows = self._engine._query(
            "SELECT max(idx) FROM entries WHERE group_id=?", (self.group_id,)
        )
        top = rows[0][0]
        return int(top) if top is not None else self.dummy()[0]

    def snapshot_index(self) -> int:
        """Index of the stored snapshot (0 when none)."""
        blob = self._row()[6]
        return 0 if blob is None else decode(bytes(blob), SnapshotMetadata).index

    def stored_term(self, i: int) -> int:
        """Term of entry ``i`` (dummy included)."""
        dummy_index, dummy_term = self.dummy()
        if i == dummy_index:
            return dummy_term
        rows = self._engine._query(
            "SELECT term FROM entries WHERE group_id=? AND idx=?", (self.group_id, i)
        )
        return int(rows[0][0])

    # -- the raft Storage protocol ---------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        """Hard state and membership (the override, else the snapshot's)."""
        row = self._row()
        hs = HardState(term=int(row[2]), vote=int(row[3]), commit=int(row[4]))
        if row[5] is not None:
            return hs, decode(bytes(row[5]), ConfState)
        if row[6] is not None:
            return hs, decode(bytes(row[6]), SnapshotMetadata).conf_state
        return hs, ConfState()

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries in ``[lo, hi)``, at most ``max_size`` bytes but at least one."""
        dummy_index, _ = self.dummy()
        if lo <= dummy_index:
            raise CompactedError(f"index {lo} is compacted (first index {dummy_index + 1})")
        last = self.last()
        if hi > last + 1:
            raise UnavailableError(f"entries' hi({hi}) is out of bound lastindex({last})")
        if last == dummy_index:
            raise UnavailableError("the log holds no entries")
        if lo > hi:
            raise ValueError(f"invalid range [{lo}, {hi})")
        rows = self._engine._query(
            "SELECT idx, term, type, data FROM entries WHERE group_id=? AND idx>=? AND idx<? "
            "ORDER BY idx",
            (self.group_id, lo, hi),
        )
        ents = [Entry(int(t), int(i), _ENTRY_TYPES[int(ty)], bytes(d)) for i, t, ty, d in rows]
        return limit_size(ents, max_size)

    def term(self, i: int) -> int:
        """Term of entry ``i``."""
        dummy_index = self.dummy()[0]
        if i < dummy_index:
            raise CompactedError(f"index {i} is compacted (first index {dummy_index + 1})")
        last = self.last()
        if i > last:
            raise UnavailableError(f"index {i} is past the last index {last}")
        return self.stored_term(i)

    def last_index(self) -> int:
        """Index of the last entry."""
        return self.last()

    def first_index(self) -> int:
        """Index of the first entry after the dummy."""
        return self.dummy()[0] + 1

    def snapshot(self) -> Snapshot:
        """The stored snapshot (the empty one if none)."""
        rows = self._engine._query(
            "SELECT snap_meta, snap_data FROM groups WHERE group_id=?", (self.group_id,)
        )
        if not rows or rows[0][0] is None:
            return EMPTY_SNAPSHOT
        meta, data = rows[0]
        return Snapshot(decode(bytes(meta), SnapshotMetadata), bytes(data))
