"""Bugs the simulator tests plant with ``monkeypatch`` (nothing in the library knows of them)."""

from __future__ import annotations

import trio

from multiraft.node import Node

__all__ = ["read_without_barrier"]


async def read_without_barrier(self: Node, group_id: int) -> int:
    """``Node.read`` that skips the read index: the replica answers from what it applied."""
    await trio.lowlevel.checkpoint()
    return self.applied_index(group_id)
