"""Bookkeeping of linearizable read requests confirmed by a heartbeat round (ReadIndex)."""

from __future__ import annotations

import attrs

from multiraft.raft.types import Message, ReadOnlyOption

__all__ = ["ReadIndexStatus", "ReadOnly"]


@attrs.define(slots=True)
class ReadIndexStatus:
    """One pending read: the request, the commit index when it arrived, who acked."""

    req: Message
    index: int
    acks: dict[int, bool] = attrs.field(factory=dict)


class ReadOnly:
    """Pending ReadIndex requests of a leader, in arrival order, keyed by their context.

    With ``ReadOnlyOption.SAFE`` a request is answered once a quorum acknowledged a
    heartbeat that carried its context (or a later one's: acks confirm every
    request queued before them).
    """

    __slots__ = ("option", "pending")

    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        # One dict is both the index by context and the arrival queue (dicts keep
        # insertion order): an idle group holds a single empty dict, which the
        # garbage collector does not track, instead of a dict and a list.
        self.pending: dict[bytes, ReadIndexStatus] = {}

    @property
    def queue(self) -> list[bytes]:
        """Contexts of the pending requests, oldest first."""
        return list(self.pending)

    def reset(self) -> None:
        """Drop every pending request (a new term: they can no longer be confirmed)."""
        if self.pending:
            self.pending.clear()

    def add_request(self, index: int, m: Message) -> None:
        """Queue a read request whose context is ``m.entries[0].data``."""
        ctx = m.entries[0].data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(req=m, index=index)

    def recv_ack(self, node_id: int, ctx: bytes) -> dict[int, bool]:
        """Record that ``node_id`` acknowledged the heartbeat carrying ``ctx``."""
        rs = self.pending.get(ctx)
        if rs is None:
            return {}
        rs.acks[node_id] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Dequeue every request up to and including the one with ``ctx``."""
        pending = self.pending
        if ctx not in pending:
            return []
        done_ctxs = []
        for c in pending:
            done_ctxs.append(c)
            if c == ctx:
                break
        return [pending.pop(c) for c in done_ctxs]

    def last_pending_request_ctx(self) -> bytes:
        """Context of the newest pending request, ``b""`` when none."""
        return next(reversed(self.pending), b"")
