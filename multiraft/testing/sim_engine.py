"""A crash-aware in-memory log engine for simulated nodes.

What a real engine guarantees is modelled exactly: a batch is durable once
``write`` returns, and nothing else is. The coordinator runs writes through
``trio.to_thread`` (``write_in_thread=True``), which the simulator replaces by
:class:`~multiraft.testing.sim_runtime.SimulatedThreads`: a write first waits
its disk delay (:meth:`SimLogEngine.simulated_delay`) and only then takes
effect. A crash cancels the node during that delay, so the write in progress
never returns and is lost, except that a torn write may leave a prefix of the
batch's groups on disk (:meth:`SimLogEngine.interrupted`): recovery may keep an
unacknowledged tail, never lose an acknowledged one. The engine object outlives
the node: a restarted node opens the same engine, that is, its durable state.

A batch written with ``sync=False`` is visible to the node at once but not
durable: it becomes durable with the next synced write (or group removal), and
a crash before then (:meth:`SimLogEngine.lose_unsynced`) keeps a random prefix
of the unsynced batches and undoes the rest, as the durable engine's recovery
cuts its log at the first lost batch. The coordinator may skip the sync only for
commit index moves, so an unsynced batch holding anything else, or a hard
state with a new term or vote, is refused with ``ValueError``.

Every write that becomes durable is reported to a :class:`WriteObserver` (the
safety checker reads the group storages from there).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from multiraft.ports import GroupStorage, GroupWrite, LogEngine, WriteBatch
from multiraft.raft.types import HardState

__all__ = ["DiskModel", "SimLogEngine", "WriteObserver"]


class WriteObserver(Protocol):
    """Told about every batch that became durable."""

    def on_write(self, node_id: int, engine: SimLogEngine, batch: WriteBatch) -> None:
        """``batch`` is now durable on ``node_id`` (``engine`` already reflects it)."""
        ...

    def on_remove(self, node_id: int, group_id: int) -> None:
        """``node_id`` durably dropped every trace of ``group_id``."""
        ...


class DiskModel:
    """Timing of one node's disk: a base sync delay plus an extra delay when slow."""

    __slots__ = ("base_seconds", "rng", "slow_seconds", "torn_write_rate")

    def __init__(self, rng: random.Random, base_seconds: float = 0.001) -> None:
        self.rng = rng
        self.base_seconds = base_seconds
        #: Extra delay per sync while the disk is slow (0: healthy).
        self.slow_seconds = 0.0
        #: Probability that a write cut short by a crash leaves part of its batch.
        self.torn_write_rate = 0.5

    def sync_delay(self) -> float:
        """The duration of the next sync."""
        base = self.base_seconds * (0.5 + self.rng.random())
        if self.slow_seconds:
            return base + self.slow_seconds * (0.5 + self.rng.random())
        return base


class SimLogEngine:
    """The ``LogEngine`` of one simulated node: in memory, with sync delays and crash loss."""

    __slots__ = (
        "_inner",
        "_removed",
        "_unsynced",
        "disk",
        "lost_unsynced_writes",
        "lost_writes",
        "node_id",
        "observer",
        "torn_writes",
    )

    def __init__(self, node_id: int, disk: DiskModel, observer: WriteObserver) -> None:
        # The coordinator package reaches its adapters only lazily.
        from storage.memory_engine import MemoryLogEngine

        self._inner: LogEngine = MemoryLogEngine()
        #: Tombstones: removed groups, until written again (they survive restarts).
        self._removed: set[int] = set()
        self.node_id = node_id
        self.disk = disk
        self.observer = observer
        #: Writes in progress when the node crashed, wholly lost.
        self.lost_writes = 0
        #: Writes in progress when the node crashed that left a prefix of their batch.
        self.torn_writes = 0
        #: Unsynced batches undone by crashes.
        self.lost_unsynced_writes = 0
        #: Unsynced batches written since the last sync, each with the hard
        #: states its groups had before it (to undo it at a crash).
        self._unsynced: list[tuple[WriteBatch, list[tuple[int, HardState]]]] = []

    def storage(self, group_id: int) -> GroupStorage:
        """The durable log of ``group_id`` (created empty when new)."""
        return self._inner.storage(group_id)

    def write(self, batch: WriteBatch) -> None:
        """Make ``batch`` durable (and the unsynced ones before it) and tell the observer.

        A batch with ``sync=False`` only takes effect: durable at the next sync.
        """
        if not batch.sync:
            self._unsynced.append((batch, self._hard_states_before(batch)))
            self._inner.write(batch)
            return
        # Reported before this batch changes the storage (it may compact their entries).
        self._synced()
        self._inner.write(batch)
        for gw in batch.groups:
            self._removed.discard(gw.group_id)
        self.observer.on_write(self.node_id, self, batch)

    def _hard_states_before(self, batch: WriteBatch) -> list[tuple[int, HardState]]:
        """The stored hard states of ``batch``'s groups; ``ValueError`` if it must sync."""
        before = []
        for gw in batch.groups:
            gid = gw.group_id
            hs = gw.hard_state
            if hs is None or not gw.holds_only_hard_state():
                raise ValueError(f"group {gid}: an unsynced write holds more than a commit index")
            prev = self._inner.storage(gid).initial_state()[0]
            if (hs.term, hs.vote) != (prev.term, prev.vote) or hs.commit < prev.commit:
                raise ValueError(
                    f"group {gid}: an unsynced write changes more than the commit index"
                    f" ({prev} -> {hs})"
                )
            before.append((gid, prev))
        return before

    def _synced(self) -> None:
        """The unsynced batches are durable now: tell the observer, in order."""
        pending = self._unsynced
        if pending:
            self._unsynced = []
            for batch, _ in pending:
                self.observer.on_write(self.node_id, self, batch)

    def write_back(self) -> None:
        """Make the unsynced batches durable, as a disk eventually writes its cache back."""
        self._synced()

    def lose_unsynced(self) -> None:
        """The node crashed: keep a random prefix of the unsynced batches, undo the rest."""
        pending = self._unsynced
        if not pending:
            return
        kept = self.disk.rng.randrange(len(pending) + 1)
        self._unsynced = pending[:kept]
        self._synced()
        for _, before in reversed(pending[kept:]):
            for gid, hs in before:
                self._inner.write(WriteBatch([GroupWrite(gid, hard_state=hs)]))
        self.lost_unsynced_writes += len(pending) - kept

    def group_ids(self) -> Iterable[int]:
        """Groups with durable state."""
        return self._inner.group_ids()

    def remove_group(self, group_id: int) -> None:
        """Durably drop ``group_id`` and tell the observer (a sync, as on a real disk)."""
        self._synced()
        self._inner.remove_group(group_id)
        self._removed.add(group_id)
        self.observer.on_remove(self.node_id, group_id)

    def removed_groups(self) -> list[int]:
        """Groups removed from this engine and not written since (their tombstones)."""
        return sorted(self._removed)

    def close(self) -> None:
        """Nothing to release: the engine outlives its node (it is the node's disk)."""

    def simulated_delay(self) -> float:
        """How long the next write or removal spends before it takes effect."""
        return self.disk.sync_delay()

    def interrupted(self, method: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """A crash hit ``method(*args)`` before it took effect: lose it, or part of it."""
        name = getattr(method, "__name__", "")
        if name != "write" or not args:
            self.lost_writes += 1
            return
        batch = args[0]
        assert isinstance(batch, WriteBatch)
        rng = self.disk.rng
        if len(batch.groups) > 1 and rng.random() < self.disk.torn_write_rate:
            kept = rng.randrange(1, len(batch.groups))
            self.torn_writes += 1
            self.write(WriteBatch(batch.groups[:kept], batch.sync))
            return
        self.lost_writes += 1
