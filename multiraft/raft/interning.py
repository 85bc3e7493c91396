"""Sharing equal immutable values between the groups of a process.

A node hosts thousands of groups and most of them have one of a few
memberships: instead of every group keeping its own copy of the same
configuration objects, the constructors hand out one shared instance per
distinct value. The table is bounded: past its limit it starts over (values
already handed out stay valid, they are only no longer shared with new ones).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["InternTable"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class InternTable(Generic[K, V]):
    """At most ``limit`` shared values by key."""

    __slots__ = ("_limit", "_values")

    def __init__(self, limit: int = 4096) -> None:
        if limit <= 0:
            raise ValueError(f"intern table limit must be positive, got {limit}")
        self._limit = limit
        self._values: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: K) -> V | None:
        """The shared value for ``key``, or None if there is none yet."""
        return self._values.get(key)

    def add(self, key: K, value: V) -> V:
        """Share ``value`` under ``key`` from now on; returns it."""
        values = self._values
        if len(values) >= self._limit:
            values.clear()
        values[key] = value
        return value
