"""Builders of entries and snapshots shared by the log and storage tests."""

from __future__ import annotations

from multiraft.raft.types import ConfState, Entry, Snapshot, SnapshotMetadata


def ents(*pairs: tuple[int, int]) -> list[Entry]:
    """Entries from ``(index, term)`` pairs, without data."""
    return [Entry(term=term, index=index) for index, term in pairs]


def run(first: int, last: int, term: int) -> list[Entry]:
    """Entries ``first..last`` (inclusive), all of one term."""
    return [Entry(term=term, index=i) for i in range(first, last + 1)]


def snapshot_at(index: int, term: int, conf_state: ConfState | None = None) -> Snapshot:
    """A snapshot at (``index``, ``term``) with no data."""
    meta = SnapshotMetadata(conf_state=conf_state or ConfState(), index=index, term=term)
    return Snapshot(metadata=meta)
