"""A linearizability checker for key-value histories (Wing & Gong search, Lowe's memoization).

A history is a list of :class:`Operation` records: each has the moment it was
invoked and the moment its outcome was seen, as positions in one global order
of client events (the simulator is single-threaded, so the order in which it
records invocations and completions is real time). An operation whose outcome
was never seen (a timeout, a crashed node) has ``completed=None``: it may have
taken effect at any moment after its invocation, or never.

Linearizability is local (Herlihy & Wing): a history is linearizable if and only
if the sub-history of every key is, so :func:`check_history` checks each key on
its own. Per key the search (:func:`check_key`) walks the events in order and
tries to linearize each invoked operation before the first pending return,
backtracking when a return is reached with its operation not yet placed; a
cache of (placed operations, register value) pairs already explored keeps the
search from revisiting a state (Lowe's improvement, as in Porcupine).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "KeyResult",
    "LinearizabilityResult",
    "OpKind",
    "Operation",
    "check_history",
    "check_key",
]

#: Default bound on search steps per key before the check gives up as inconclusive.
DEFAULT_STEP_BUDGET = 2_000_000


class OpKind(enum.Enum):
    """What an operation did to its key."""

    #: Set the key to ``value``.
    PUT = "put"
    #: Remove the key (its value becomes None).
    DELETE = "delete"
    #: Read the key; ``value`` is what was returned (None: absent).
    GET = "get"


@attrs.frozen(slots=True)
class Operation:
    """One client operation on one key of one register space.

    ``invoked`` and ``completed`` are positions in the global order of client
    events (``completed`` None: outcome unknown). ``space`` separates independent
    key spaces (for example raft groups). Times are for display only.
    """

    client: int
    space: int
    key: bytes
    kind: OpKind
    value: bytes | None
    invoked: int
    completed: int | None
    invoked_at: float = 0.0
    completed_at: float | None = None

    def describe(self) -> str:
        """A one-line readable form."""
        end = "?" if self.completed_at is None else f"{self.completed_at:.3f}"
        what = self.kind.value
        arg = "" if self.kind is OpKind.DELETE else f" {self.value!r}"
        return (
            f"client {self.client} {what}({self.key!r}){arg} "
            f"[{self.invoked_at:.3f} .. {end}] (events {self.invoked}..{self.completed})"
        )


@attrs.frozen(slots=True)
class KeyResult:
    """The verdict on one key.

    ``ok`` True: linearizable; False: not; None: the step budget ran out first.
    On failure ``stuck_on`` is an operation that no linearization of the longest
    explored prefix could place before its return, and ``placed`` how many
    operations that prefix held.
    """

    space: int
    key: bytes
    ok: bool | None
    operations: int
    steps: int
    stuck_on: Operation | None = None
    placed: int = 0
    value_then: bytes | None = None

    def describe(self) -> str:
        """A readable account of the verdict."""
        head = f"space {self.space} key {self.key!r}: {self.operations} operations"
        if self.ok:
            return f"{head}, linearizable"
        if self.ok is None:
            return f"{head}, inconclusive after {self.steps} search steps"
        assert self.stuck_on is not None
        return (
            f"{head}, NOT linearizable: after placing {self.placed} operations "
            f"(register then {self.value_then!r}) no order places {self.stuck_on.describe()}"
        )


@attrs.frozen(slots=True)
class LinearizabilityResult:
    """The verdict on a whole history: one :class:`KeyResult` per key."""

    keys: tuple[KeyResult, ...]

    @property
    def ok(self) -> bool:
        """True when every key is linearizable (an inconclusive key is not ok)."""
        return all(k.ok for k in self.keys)

    @property
    def operations(self) -> int:
        """Operations checked, over all keys."""
        return sum(k.operations for k in self.keys)

    def failures(self) -> list[KeyResult]:
        """Keys that are not linearizable or were inconclusive."""
        return [k for k in self.keys if not k.ok]


def check_history(
    operations: Iterable[Operation], *, step_budget: int = DEFAULT_STEP_BUDGET
) -> LinearizabilityResult:
    """Check every ``(space, key)`` sub-history; keys in ascending order."""
    per_key: dict[tuple[int, bytes], list[Operation]] = {}
    for op in operations:
        per_key.setdefault((op.space, op.key), []).append(op)
    results = tuple(check_key(per_key[k], step_budget=step_budget) for k in sorted(per_key))
    return LinearizabilityResult(results)


def _prune(ops: Sequence[Operation]) -> list[Operation]:
    """Drop operations that cannot constrain any linearization.

    A read with an unknown outcome returned nothing. A write with an unknown
    outcome whose value no read returned can always be placed last (after every
    other operation), where it is invisible: keeping it only widens the search.
    This relies on written values being unique per key, which histories of the
    simulator guarantee; with duplicate values the write is kept.
    """
    read_values: set[bytes | None] = set()
    written: dict[bytes | None, int] = {}
    for op in ops:
        if op.kind is OpKind.GET and op.completed is not None:
            read_values.add(op.value)
        elif op.kind is OpKind.PUT:
            written[op.value] = written.get(op.value, 0) + 1
    kept = []
    for op in ops:
        if op.completed is None:
            if op.kind is OpKind.GET:
                continue
            if op.kind is OpKind.PUT and op.value not in read_values and written[op.value] == 1:
                continue
        kept.append(op)
    return kept


class _Entry:
    """A node of the doubly linked list of call and return events."""

    __slots__ = ("match", "next", "op", "prev")

    def __init__(self, op: int, match: _Entry | None) -> None:
        self.op = op
        #: For a call: its return entry. For a return: None.
        self.match = match
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _build_list(ops: Sequence[Operation]) -> _Entry:
    """The events in order, behind a sentinel head; unknown returns go last."""
    infinity = 1 << 62
    events: list[tuple[int, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.invoked, 0, i))
        done = infinity + i if op.completed is None else op.completed
        events.append((done, 1, i))
    # At an equal position a call sorts before a return: such operations overlap.
    events.sort()
    head = _Entry(-1, None)
    returns: dict[int, _Entry] = {}
    nodes: list[_Entry] = []
    for _, is_return, i in events:
        if is_return:
            nodes.append(returns[i])
        else:
            ret = _Entry(i, None)
            returns[i] = ret
            nodes.append(_Entry(i, ret))
    prev = head
    for node in nodes:
        prev.next = node
        node.prev = prev
        prev = node
    return head


def _lift(call: _Entry) -> None:
    """Unlink a call and its return from the list."""
    ret = call.match
    assert ret is not None and call.prev is not None and ret.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    """Put back a call and its return where they were (reverse of :func:`_lift`)."""
    ret = call.match
    assert ret is not None and call.prev is not None and ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def _step(op: Operation, value: bytes | None) -> tuple[bool, bytes | None]:
    """Apply ``op`` to a register holding ``value``: (allowed, value after)."""
    kind = op.kind
    if kind is OpKind.PUT:
        return True, op.value
    if kind is OpKind.DELETE:
        return True, None
    return op.value == value, value


def check_key(
    operations: Sequence[Operation], *, step_budget: int = DEFAULT_STEP_BUDGET
) -> KeyResult:
    """Whether the operations on one key (one register, initially absent) are linearizable."""
    if not operations:
        raise ValueError("check_key needs at least one operation")
    space, key = operations[0].space, operations[0].key
    for op in operations:
        if (op.space, op.key) != (space, key):
            raise ValueError("check_key takes the operations of one key only")
        if op.completed is not None and op.completed < op.invoked:
            raise ValueError(f"operation completes before it is invoked: {op.describe()}")
    ops = _prune(operations)
    total = len(operations)
    if not ops:
        return KeyResult(space, key, True, total, 0)
    head = _build_list(ops)
    value: bytes | None = None
    placed = 0
    seen: set[tuple[int, bytes | None]] = set()
    stack: list[tuple[_Entry, bytes | None]] = []
    entry = head.next
    steps = 0
    deepest = (-1, 0, value)
    while head.next is not None:
        steps += 1
        if steps > step_budget:
            return KeyResult(space, key, None, total, steps)
        assert entry is not None
        if entry.match is not None:
            ok, after = _step(ops[entry.op], value)
            if ok:
                bits = placed | (1 << entry.op)
                state = (bits, after)
                if state not in seen:
                    seen.add(state)
                    stack.append((entry, value))
                    value = after
                    placed = bits
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
            continue
        # A return whose operation is not placed yet: this prefix is a dead end.
        if len(stack) > deepest[0]:
            deepest = (len(stack), entry.op, value)
        if not stack:
            return _failure(space, key, total, steps, ops, deepest)
        call, value = stack.pop()
        placed &= ~(1 << call.op)
        _unlift(call)
        entry = call.next
    return KeyResult(space, key, True, total, steps)


def _failure(
    space: int,
    key: bytes,
    total: int,
    steps: int,
    ops: Sequence[Operation],
    deepest: tuple[int, int, bytes | None],
) -> KeyResult:
    depth, stuck, value = deepest
    return KeyResult(
        space, key, False, total, steps, stuck_on=ops[stuck], placed=depth, value_then=value
    )
