"""Writes to the node's log engine: one at a time, off the event loop when they block."""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import trio

from multiraft.counters import NodeCounters
from multiraft.duration_histogram import DurationHistogram
from multiraft.ports import LogEngine, TimedLogEngine, WriteBatch

__all__ = ["LogWriter", "WriteDurations"]


@attrs.define(slots=True)
class WriteDurations:
    """How long the node's durable ready-cycle writes took (see ``Node.write_durations``).

    Only writes that sync count (the ``storage_syncs`` of ``Node.stats()``);
    the cheap unsynced ones (commit index moves only) are left out.

    ``waited``: from the cycle handing its batch to the writer until the write
    returned, as the cycle saw it (queueing behind another write, the handoff
    to the worker thread and back, and the engine's own time); ``in_engine``:
    the log engine's ``write`` call alone (encoding, the file write, the sync),
    as the engine reports it (:class:`~multiraft.ports.TimedLogEngine`; empty
    for an engine that does not). The difference is what running the write off
    the event loop costs.
    """

    waited: DurationHistogram = attrs.field(factory=DurationHistogram)
    in_engine: DurationHistogram = attrs.field(factory=DurationHistogram)

    def copy(self) -> WriteDurations:
        """An independent snapshot."""
        return WriteDurations(self.waited.copy(), self.in_engine.copy())

    def minus(self, earlier: WriteDurations) -> WriteDurations:
        """The writes since the snapshot ``earlier``."""
        return WriteDurations(
            self.waited.minus(earlier.waited), self.in_engine.minus(earlier.in_engine)
        )


class LogWriter:
    """Serializes the writes of one node to its log engine.

    With ``in_thread`` each write runs in a worker thread (a durable engine
    blocks on ``fdatasync``) so that ticks and other tasks keep running; the
    lock keeps it to one writer at a time, as the ``LogEngine`` port requires.
    """

    __slots__ = ("_clock", "_counters", "_engine", "_in_thread", "_lock", "_timed", "durations")

    def __init__(
        self,
        engine: LogEngine,
        in_thread: bool,
        counters: NodeCounters,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._engine = engine
        self._in_thread = in_thread
        self._counters = counters
        self._clock = clock
        self._lock = trio.Lock()
        # An engine that times itself fills ``in_engine``; others leave it empty.
        self._timed = engine if isinstance(engine, TimedLogEngine) else None
        #: Durations of the durable writes made through :meth:`write`.
        self.durations = WriteDurations()

    @property
    def in_thread(self) -> bool:
        """Whether writes run in a worker thread (other tasks run meanwhile)."""
        return self._in_thread

    async def write(self, batch: WriteBatch) -> None:
        """Persist ``batch``: durably (one sync), or without a sync if ``batch.sync`` is False."""
        clock = self._clock
        began = clock()
        async with self._lock:
            # The engine's own bound method goes to the thread: the simulator
            # recognizes its disk's writes by it (delays, crashes, torn writes).
            if self._in_thread:
                await trio.to_thread.run_sync(self._engine.write, batch)
            else:
                self._engine.write(batch)
        if batch.sync:
            durations = self.durations
            durations.waited.observe(clock() - began)
            timed = self._timed
            if timed is not None:
                durations.in_engine.observe(timed.last_write_seconds)
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
