"""One timer for the deadlines of every outstanding request of a node.

A ``propose`` that opened its own ``trio.move_on_at`` scope paid for a cancel
scope per call, the largest single cost of a proposal on a busy leader. Requests
made while the group has a known leader all take the same ``proposal_timeout``
from the moment of the call, so their deadlines arrive in the order they were
registered: one task sleeping until the oldest pending one can fail them all
with the same error, at the same time, as a scope per call would.

A request whose deadline would be earlier than the last one registered (it
waited for a leader first, or the timeout was lowered) is refused by
:meth:`RequestDeadlines.add`; its caller keeps a scope of its own.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import trio

from multiraft.errors import ProposalTimeoutError

if TYPE_CHECKING:
    from multiraft.proposals import Waiter
    from multiraft.replica import Replica

__all__ = ["RequestDeadlines"]

#: Finished requests tolerated behind a pending one before the queue is compacted.
_COMPACT_AT = 1024

# (deadline, waiter, replica, the waiters map the request is in, its key, what it is)
_Item = tuple[float, "Waiter", "Replica", "dict[Any, Waiter]", Any, str]


class RequestDeadlines:
    """Fails requests with ``ProposalTimeoutError`` when their deadline passes.

    :meth:`run` is the timer task (the node starts it in its nursery); requests
    are accepted only while it runs.
    """

    __slots__ = ("_compact_at", "_queue", "_wake", "running")

    def __init__(self) -> None:
        self._queue: deque[_Item] = deque()
        self._wake = trio.Event()
        self._compact_at = _COMPACT_AT
        #: Whether the timer task runs (requests are refused otherwise).
        self.running = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(
        self,
        deadline: float,
        waiter: Waiter,
        r: Replica,
        waiters: dict[Any, Waiter],
        key: Any,
        what: str,
    ) -> bool:
        """Fail ``waiter`` at ``deadline`` unless it is done by then; False if refused.

        On expiry ``key`` is removed from ``waiters`` and the waiter gets
        ``ProposalTimeoutError(group, leader or last leader, what)``.
        """
        q = self._queue
        if not self.running:
            return False
        while q and q[0][1].done:
            q.popleft()
        if q:
            if deadline < q[-1][0]:
                return False
            if len(q) >= self._compact_at:
                self._compact()
                q = self._queue
        else:
            self._wake.set()
        q.append((deadline, waiter, r, waiters, key, what))
        return True

    def _compact(self) -> None:
        # A request stuck at the head keeps finished ones behind it: drop those.
        pending = deque(item for item in self._queue if not item[1].done)
        self._queue = pending
        self._compact_at = max(_COMPACT_AT, 2 * len(pending))

    async def run(self) -> None:
        """Expire requests as their deadlines pass (runs until cancelled)."""
        self.running = True
        try:
            while True:
                q = self._queue
                if not q:
                    self._wake = trio.Event()
                    await self._wake.wait()
                    continue
                deadline, waiter, r, waiters, key, what = q[0]
                if waiter.done:
                    q.popleft()
                    continue
                if trio.current_time() < deadline:
                    await trio.sleep_until(deadline)
                    continue
                q.popleft()
                waiters.pop(key, None)
                waiter.set_error(
                    ProposalTimeoutError(r.group_id, r.leader or r.last_leader or None, what)
                )
        finally:
            self.running = False
