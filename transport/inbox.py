"""What ``receive`` hands the node: incoming frames (bounded) and snapshot outcomes.

Connection readers wait for room when the node falls behind, which stops them
reading the socket and pushes back on the senders. Snapshot outcomes never
wait: they can be produced from ``send`` itself (a snapshot refused at once),
and each snapshot yields exactly one, so their number is bounded anyway.
"""

from __future__ import annotations

from collections import deque

import trio

from multiraft.frames import Frame, SnapshotOutcome

__all__ = ["Inbox"]


class Inbox:
    """A queue of frames (at most ``capacity``) and snapshot outcomes, in arrival order."""

    __slots__ = ("_closed", "_frames", "_items", "_not_empty", "_not_full", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Frame | SnapshotOutcome] = deque()
        self._frames = 0
        self._not_empty = trio.lowlevel.ParkingLot()
        self._not_full = trio.lowlevel.ParkingLot()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    async def put_frame(self, frame: Frame) -> None:
        """Queue ``frame``, waiting while ``capacity`` frames are queued.

        Raises :class:`trio.ClosedResourceError` once the inbox is closed.
        """
        while self._frames >= self.capacity and not self._closed:
            await self._not_full.park()
        if self._closed:
            raise trio.ClosedResourceError("the transport is closed")
        self._items.append(frame)
        self._frames += 1
        self._not_empty.unpark()

    def put_outcome(self, outcome: SnapshotOutcome) -> None:
        """Queue a snapshot outcome at once (dropped if the inbox is closed)."""
        if not self._closed:
            self._items.append(outcome)
            self._not_empty.unpark()

    async def get(self) -> Frame | SnapshotOutcome:
        """The oldest item; :class:`trio.EndOfChannel` once closed."""
        while not self._items:
            if self._closed:
                raise trio.EndOfChannel
            await self._not_empty.park()
        if self._closed:
            raise trio.EndOfChannel
        item = self._items.popleft()
        if isinstance(item, Frame):
            self._frames -= 1
            self._not_full.unpark()
        return item

    def close(self) -> None:
        """Wake every waiter; later ``get`` calls end, later puts fail."""
        self._closed = True
        self._items.clear()
        self._frames = 0
        self._not_empty.unpark_all()
        self._not_full.unpark_all()
