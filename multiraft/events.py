"""Events a node publishes about its groups, and subscriptions with bounded buffers."""

from __future__ import annotations

from collections import deque
from types import TracebackType

import attrs
import trio

from multiraft.raft.types import ConfState

__all__ = [
    "Event",
    "EventHub",
    "EventSubscription",
    "GroupCreated",
    "GroupFailed",
    "GroupRemoved",
    "LeaderChanged",
    "MembershipChanged",
]


@attrs.frozen(slots=True)
class LeaderChanged:
    """The leader of ``group_id`` as seen by this node changed (``leader`` None: unknown)."""

    group_id: int
    leader: int | None
    term: int


@attrs.frozen(slots=True)
class MembershipChanged:
    """A membership change of ``group_id`` was applied at log ``index``."""

    group_id: int
    conf_state: ConfState
    index: int


@attrs.frozen(slots=True)
class GroupCreated:
    """This node started hosting ``group_id`` (``lazily``: created for an incoming message)."""

    group_id: int
    lazily: bool = False


@attrs.frozen(slots=True)
class GroupRemoved:
    """This node stopped hosting ``group_id`` and left a tombstone for it."""

    group_id: int


@attrs.frozen(slots=True)
class GroupFailed:
    """This node stopped ``group_id``: its raft refused an input as impossible.

    ``reason`` names the broken invariant. The group no longer votes or
    acknowledges here; requests for it raise ``GroupFailedError``.
    """

    group_id: int
    reason: str


Event = LeaderChanged | MembershipChanged | GroupCreated | GroupRemoved | GroupFailed


class EventSubscription:
    """An async iterator over the events published after it was opened.

    Holds at most ``capacity`` undelivered events; older ones are dropped first
    and counted in ``dropped``, so a subscriber that stops reading costs bounded
    memory. Use as ``async with node.events() as events: async for ev in events``,
    or iterate directly and call :meth:`close` when done. Iteration ends when the
    node closes.
    """

    __slots__ = ("_closed", "_hub", "_queue", "_wakeup", "dropped")

    def __init__(self, hub: EventHub, capacity: int) -> None:
        self._hub = hub
        self._queue: deque[Event] = deque(maxlen=capacity)
        self._wakeup = trio.Event()
        self._closed = False
        self.dropped = 0

    def _push(self, event: Event) -> None:
        q = self._queue
        if len(q) == q.maxlen:
            self.dropped += 1
        q.append(event)
        self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    def close(self) -> None:
        """Stop receiving events (the buffered ones are discarded)."""
        self._hub._unsubscribe(self)
        self._queue.clear()
        self._end()

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        return self._queue.popleft()

    def get_nowait(self) -> Event | None:
        """The oldest buffered event, or None when there is none."""
        return self._queue.popleft() if self._queue else None

    async def __aenter__(self) -> EventSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventHub:
    """Fans published events out to every open subscription."""

    __slots__ = ("_capacity", "_closed", "_subscribers")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._subscribers: list[EventSubscription] = []
        self._closed = False

    def subscribe(self) -> EventSubscription:
        """A new subscription; on a closed hub it is already at its end."""
        sub = EventSubscription(self, self._capacity)
        if self._closed:
            sub._end()
        else:
            self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: EventSubscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber (never blocks)."""
        for sub in self._subscribers:
            sub._push(event)

    @property
    def has_subscribers(self) -> bool:
        """Whether anyone listens (publishers may skip building events otherwise)."""
        return bool(self._subscribers)

    def close(self) -> None:
        """End every subscription once its buffered events are read."""
        self._closed = True
        for sub in self._subscribers:
            sub._end()
        self._subscribers.clear()
