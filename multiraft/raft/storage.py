"""The Storage protocol: how the raft core reads a group's persisted log."""

from __future__ import annotations

from typing import Protocol

from multiraft.raft.types import ConfState, Entry, HardState, Snapshot

__all__ = ["Storage", "NO_LIMIT"]

#: ``max_size`` meaning "no limit" for :meth:`Storage.entries`.
NO_LIMIT = (1 << 63) - 1


class Storage(Protocol):
    """Read access to a group's stable log, as etcd raft's ``Storage`` interface.

    The raft core never writes through this protocol: the application persists
    what ``Ready`` hands it, then the core reads it back from here.
    """

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and membership."""
        ...

    def entries(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries in ``[lo, hi)``, capped at ``max_size`` bytes but at least one.

        Raises ``CompactedError`` if ``lo`` is compacted away and
        ``UnavailableError`` if ``hi`` is past ``last_index() + 1``.
        """
        ...

    def term(self, i: int) -> int:
        """Term of entry ``i``; valid for ``first_index() - 1 <= i <= last_index()``."""
        ...

    def last_index(self) -> int:
        """Index of the last entry in the log."""
        ...

    def first_index(self) -> int:
        """Index of the first entry still available (older ones are in the snapshot)."""
        ...

    def snapshot(self) -> Snapshot:
        """The most recent snapshot (may raise ``SnapshotTemporarilyUnavailableError``)."""
        ...
