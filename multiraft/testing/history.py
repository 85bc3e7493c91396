"""The client history of a run: invocations and outcomes, in real-time order.

Clients call :meth:`History.invoke` before they send an operation and one of
:meth:`History.ok`, :meth:`History.unknown` or :meth:`History.failed` when they
learn (or give up on) its outcome. Each call takes the next number of one
counter; the simulator runs on one thread, so an operation that completed
with a smaller number than another's invocation really finished before the
other began. Failed operations (refused before they could take effect) are
left out: they constrain nothing.
"""

from __future__ import annotations

import trio

from multiraft.testing.linearizability import Operation, OpKind
from multiraft.testing.trace import EventTrace

__all__ = ["History", "PendingOperation"]


def _describe(client: int, space: int, key: bytes, kind: OpKind, value: bytes | None) -> str:
    arg = "" if kind is OpKind.DELETE or (kind is OpKind.GET and value is None) else f" {value!r}"
    return f"client {client} space {space} {kind.value} {key!r}{arg}"


class PendingOperation:
    """An invoked operation waiting for its outcome."""

    __slots__ = ("client", "invoked", "invoked_at", "key", "kind", "space", "value")

    def __init__(
        self,
        client: int,
        space: int,
        key: bytes,
        kind: OpKind,
        value: bytes | None,
        invoked: int,
        invoked_at: float,
    ) -> None:
        self.client = client
        self.space = space
        self.key = key
        self.kind = kind
        self.value = value
        self.invoked = invoked
        self.invoked_at = invoked_at


class History:
    """Records operations for the linearizability checker."""

    __slots__ = ("_counter", "failed_count", "operations", "trace", "unknown_count")

    def __init__(self, trace: EventTrace) -> None:
        self.trace = trace
        self.operations: list[Operation] = []
        self._counter = 0
        self.unknown_count = 0
        self.failed_count = 0

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def invoke(
        self, client: int, space: int, key: bytes, kind: OpKind, value: bytes | None = None
    ) -> PendingOperation:
        """Note that ``client`` starts an operation on ``key`` of ``space``."""
        op = PendingOperation(client, space, key, kind, value, self._next(), trio.current_time())
        self.trace.record("invoke", _describe(client, space, key, kind, value))
        return op

    def ok(self, op: PendingOperation, read: bytes | None = None) -> None:
        """The operation took effect; a read returned ``read``."""
        value = read if op.kind is OpKind.GET else op.value
        self._finish(op, value, self._next(), trio.current_time())
        what = _describe(op.client, op.space, op.key, op.kind, op.value)
        self.trace.record("ok", f"{what} -> {value!r}" if op.kind is OpKind.GET else what)

    def unknown(self, op: PendingOperation, reason: str) -> None:
        """The outcome of a write will never be known (it may take effect later, or never)."""
        self.unknown_count += 1
        self.trace.record(
            "unknown", _describe(op.client, op.space, op.key, op.kind, op.value), reason
        )
        if op.kind is not OpKind.GET:
            self._finish(op, op.value, None, None)

    def failed(self, op: PendingOperation, reason: str) -> None:
        """The operation certainly did not take effect."""
        self.failed_count += 1
        self.trace.record(
            "failed", _describe(op.client, op.space, op.key, op.kind, op.value), reason
        )

    def _finish(
        self, op: PendingOperation, value: bytes | None, done: int | None, done_at: float | None
    ) -> None:
        self.operations.append(
            Operation(
                op.client,
                op.space,
                op.key,
                op.kind,
                value,
                op.invoked,
                done,
                op.invoked_at,
                done_at,
            )
        )
