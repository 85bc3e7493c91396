"""When a quiesced replica folds its raft state away: some ticks after it quiesced.

Folding (see :mod:`multiraft.raft.dormant`) saves memory, but rebuilding the
raft state when the group is touched again costs more CPU than anything else a
lightly loaded group does: in three in-process nodes hosting 1,000 groups that
receive 60 commands a second between them, rebuilding took a third of the
driver's time (five rebuilds per command: one per replica the command wakes,
plus the leader's, woken again by the answers to its quiesce heartbeats right
after it folded). A replica therefore stays whole for ``NodeConfig.dormant_after_ticks``
ticks after quiescing and folds only if nothing woke it meanwhile; a group
touched every few hundred milliseconds never pays for a rebuild, one left alone
folds a second later.

The schedule is a queue in order of due tick (every replica is scheduled at the
current tick plus the same delay, so appending keeps the order) and a map of the
tick each scheduled replica is due at; cancelling only drops the map entry, and
queue entries that no longer match it are skipped when they come up.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

__all__ = ["FoldSchedule"]

R = TypeVar("R")


class FoldSchedule(Generic[R]):
    """The replicas waiting to fold, each with the tick it is due at."""

    __slots__ = ("_due", "_queue", "after_ticks")

    def __init__(self, after_ticks: int) -> None:
        if after_ticks < 1:
            raise ValueError(f"after_ticks must be >= 1, got {after_ticks!r}")
        #: Ticks between quiescing and folding.
        self.after_ticks = after_ticks
        self._due: dict[R, int] = {}
        self._queue: deque[tuple[int, R]] = deque()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, r: object) -> bool:
        return r in self._due

    def due_tick(self, r: R) -> int | None:
        """The tick ``r`` folds at, or None if it is not waiting."""
        return self._due.get(r)

    def schedule(self, r: R, tick: int) -> None:
        """``r`` quiesced (or was rebuilt while quiesced) at ``tick``: due ``after_ticks`` later.

        Scheduling a replica already waiting starts its wait again.
        """
        due = tick + self.after_ticks
        self._due[r] = due
        self._queue.append((due, r))

    def cancel(self, r: R) -> None:
        """``r`` woke (or left the node): it no longer folds."""
        self._due.pop(r, None)

    def take_due(self, tick: int) -> list[R]:
        """The replicas due at or before ``tick``, in the order they were scheduled."""
        queue = self._queue
        if not queue or queue[0][0] > tick:
            return []
        due_map = self._due
        out: list[R] = []
        while queue and queue[0][0] <= tick:
            due, r = queue.popleft()
            if due_map.get(r) == due:
                del due_map[r]
                out.append(r)
        return out
