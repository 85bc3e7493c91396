"""The protocol of a group's replicated state machine."""

from __future__ import annotations

from typing import Protocol

__all__ = ["StateMachine"]


class StateMachine(Protocol):
    """One replica's application state; the node drives it in log order.

    ``apply`` is called once per committed command, in index order, and its
    return value is what ``Node.propose`` returns on the node that proposed it
    (an exception it raises is raised there instead; the index still counts as
    applied). ``snapshot`` captures everything applied so far; ``restore``
    replaces the state with a snapshot's.

    A state machine whose methods may block for long (disk, heavy CPU) sets a
    class or instance attribute ``blocking = True``: the node then calls it from a
    worker thread so other groups keep ticking and heartbeating meanwhile. Without
    it, calls run on the event loop, which is fastest and deterministic.
    """

    def apply(self, index: int, command: bytes) -> object:
        """Apply the command committed at ``index``; the result goes to the proposer."""
        ...

    def snapshot(self) -> bytes:
        """Serialize the whole state."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state by the one ``data`` (from ``snapshot``) describes."""
        ...
