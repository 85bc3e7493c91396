"""The node's metadata that is not log: a small SQLite database next to the segments.

It holds the format version, node and cluster ids, the group registry with
tombstones of removed groups, the first segment still live (so an interrupted
garbage collection can finish), and the corruption found in the log with the
groups it affects. SQLite runs in WAL mode with ``synchronous=FULL``: every
committed change is durable.
"""

from __future__ import annotations

import sqlite3
import threading

from storage.errors import FormatVersionError

__all__ = ["METADATA_FILE", "METADATA_VERSION", "CorruptGroup", "Metadata"]

#: File name of the database inside the data directory.
METADATA_FILE = "meta.sqlite3"
#: Version of the data directory layout written by this code.
METADATA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (
    group_id INTEGER PRIMARY KEY, removed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS corruption (
    segment INTEGER NOT NULL, offset INTEGER NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (segment, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS corrupt_groups (
    group_id INTEGER PRIMARY KEY, segment INTEGER NOT NULL, offset INTEGER NOT NULL,
    reason TEXT NOT NULL);
"""

#: A group flagged corrupt: ``(group_id, segment seq, offset, reason)``.
CorruptGroup = tuple[int, int, int, str]


class Metadata:
    """Access to the metadata database (safe to call from several threads)."""

    def __init__(self, path: str, *, durable: bool = True) -> None:
        """Open (creating) the database; ``durable=False`` skips its fsyncs (tests only)."""
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._init_schema(path)
        except BaseException:
            self._db.close()
            raise

    def _init_schema(self, path: str) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            row = self._db.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('format_version', ?)", (METADATA_VERSION,)
                )
            elif int(row[0]) > METADATA_VERSION:
                raise FormatVersionError(
                    f"{path} was written by format version {row[0]}; this code reads "
                    f"versions up to {METADATA_VERSION}: upgrade multiraft to open it"
                )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- key/value ---------------------------------------------------------

    def _get(self, key: str) -> int | str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set(self, key: str, value: int | str) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def format_version(self) -> int:
        """The layout version recorded in the database."""
        return int(self._get("format_version") or 0)

    @property
    def node_id(self) -> int | None:
        """The node id stored for this data directory (None until set)."""
        v = self._get("node_id")
        return None if v is None else int(v)

    @node_id.setter
    def node_id(self, value: int) -> None:
        self._set("node_id", value)

    @property
    def cluster_id(self) -> str | None:
        """The cluster id stored for this data directory (None until set)."""
        v = self._get("cluster_id")
        return None if v is None else str(v)

    @cluster_id.setter
    def cluster_id(self, value: str) -> None:
        self._set("cluster_id", value)

    @property
    def first_live_segment(self) -> int:
        """Segments with a lower sequence number are garbage (0: none collected yet)."""
        v = self._get("first_live_segment")
        return 0 if v is None else int(v)

    @first_live_segment.setter
    def first_live_segment(self, seq: int) -> None:
        self._set("first_live_segment", seq)

    # -- group registry ------------------------------------------------------

    def live_groups(self) -> set[int]:
        """Registered groups that were not removed."""
        with self._lock:
            rows = self._db.execute("SELECT group_id FROM groups WHERE removed=0").fetchall()
        return {int(r[0]) for r in rows}

    def removed_groups(self) -> set[int]:
        """Tombstones: groups that were removed."""
        with self._lock:
            rows = self._db.execute("SELECT group_id FROM groups WHERE removed=1").fetchall()
        return {int(r[0]) for r in rows}

    def register(self, group_ids: list[int]) -> None:
        """Record groups as live (a removed group written again comes back)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR REPLACE INTO groups VALUES (?, 0)", [(g,) for g in group_ids]
            )

    def tombstone(self, group_ids: list[int]) -> None:
        """Record groups as removed and forget any corruption flag they had."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            rows = [(g,) for g in group_ids]
            self._db.executemany("INSERT OR REPLACE INTO groups VALUES (?, 1)", rows)
            self._db.executemany("DELETE FROM corrupt_groups WHERE group_id=?", rows)

    # -- corruption ------------------------------------------------------------

    def known_corruption(self) -> set[tuple[int, int]]:
        """``(segment, offset)`` of every corruption already recorded."""
        with self._lock:
            rows = self._db.execute("SELECT segment, offset FROM corruption").fetchall()
        return {(int(s), int(o)) for s, o in rows}

    def record_corruption(
        self, segment: int, offset: int, reason: str, group_ids: list[int]
    ) -> None:
        """Record a corruption found in the log and flag the groups it affects."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO corruption VALUES (?, ?, ?)", (segment, offset, reason)
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO corrupt_groups VALUES (?, ?, ?, ?)",
                [(g, segment, offset, reason) for g in group_ids],
            )

    def corrupt_groups(self) -> list[CorruptGroup]:
        """Groups flagged corrupt and not repaired since."""
        with self._lock:
            rows = self._db.execute(
                "SELECT group_id, segment, offset, reason FROM corrupt_groups"
            ).fetchall()
        return [(int(g), int(s), int(o), str(r)) for g, s, o, r in rows]

    def clear_corrupt(self, group_ids: list[int]) -> None:
        """The groups were repaired (their state was replaced by a snapshot)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "DELETE FROM corrupt_groups WHERE group_id=?", [(g,) for g in group_ids]
            )
