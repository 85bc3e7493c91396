"""Writes to the node's log engine: one at a time, off the event loop when they block."""

from __future__ import annotations

import trio

from multiraft.counters import NodeCounters
from multiraft.ports import LogEngine, WriteBatch

__all__ = ["LogWriter"]


class LogWriter:
    """Serializes the writes of one node to its log engine.

    With ``in_thread`` each write runs in a worker thread (a durable engine
    blocks on ``fdatasync``) so that ticks and other tasks keep running; the
    lock keeps it to one writer at a time, as the ``LogEngine`` port requires.
    """

    __slots__ = ("_counters", "_engine", "_in_thread", "_lock")

    def __init__(self, engine: LogEngine, in_thread: bool, counters: NodeCounters) -> None:
        self._engine = engine
        self._in_thread = in_thread
        self._counters = counters
        self._lock = trio.Lock()

    async def write(self, batch: WriteBatch) -> None:
        """Persist ``batch``: durably (one sync), or without a sync if ``batch.sync`` is False."""
        async with self._lock:
            if self._in_thread:
                await trio.to_thread.run_sync(self._engine.write, batch)
            else:
                self._engine.write(batch)
        if batch.sync:
            self._counters.storage_syncs += 1
        else:
            self._counters.storage_unsynced_writes += 1

    async def remove_group(self, group_id: int) -> None:
        """Durably drop the state of ``group_id`` (the engine keeps its tombstone)."""
        async with self._lock:
            if self._in_thread:
                await trio.to_thread.run_sync(self._engine.remove_group, group_id)
            else:
                self._engine.remove_group(group_id)
