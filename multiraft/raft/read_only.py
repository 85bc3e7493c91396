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


#: The pending requests of every idle :class:`ReadOnly`: shared, never written.
_NO_PENDING: dict[bytes, ReadIndexStatus] = {}


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
        # insertion order). With nothing pending it is the shared empty one, never
        # written: a group that serves no reads keeps no dict of its own.
        self.pending: dict[bytes, ReadIndexStatus] = _NO_PENDING

    @property
    def queue(self) -> list[bytes]:
        """Contexts of the pending requests, oldest first."""
        return list(self.pending)

    def reset(self) -> None:
        """Drop every pending request (a new term: they can no longer be confirmed)."""
        self.pending = _NO_PENDING

    def add_request(self, index: int, m: Message) -> None:
        """Queue a read request whose context is ``m.entries[0].data``."""
        ctx = m.entries[0].data
        pending = self.pending
        if ctx in pending:
            return
        if pending is _NO_PENDING:
            self.pending = pending = {}
        pending[ctx] = ReadIndexStatus(req=m, index=index)

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
        done = [pending.pop(c) for c in done_ctxs]
        if not pending:
            self.pending = _NO_PENDING
        return done

    def last_pending_request_ctx(self) -> bytes:
        """Context of the newest pending request, ``b""`` when none."""
        return next(reversed(self.pending), b"")
