"""Range descriptors: which keys a range holds and which nodes replicate it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

__all__ = [
    "DIRECTORY_ID",
    "FIRST_RANGE_ID",
    "RangeDescriptor",
    "TilingError",
    "check_tiling",
    "range_at",
]

#: Group id of the directory (the meta range).
DIRECTORY_ID = 1
#: Group id of the range that covers every key when the store starts.
FIRST_RANGE_ID = 2


@attrs.frozen(slots=True)
class RangeDescriptor:
    """The keys ``[start, end)`` of range ``range_id`` (``end`` None: no upper bound).

    ``generation`` counts the splits the range went through; a descriptor with a
    higher generation of the same range is newer. ``replicas`` are the nodes
    hosting the range's raft group.
    """

    range_id: int
    start: bytes
    end: bytes | None
    generation: int = 0
    replicas: tuple[int, ...] = ()

    def contains(self, key: bytes) -> bool:
        """Whether ``key`` belongs to this range."""
        return self.start <= key and (self.end is None or key < self.end)

    def overlaps(self, start: bytes, end: bytes | None) -> bool:
        """Whether this range shares any key with ``[start, end)``."""
        return (end is None or self.start < end) and (self.end is None or start < self.end)

    def describe(self) -> str:
        """A short human-readable form, for messages."""
        end = "+inf" if self.end is None else repr(self.end)
        return f"r{self.range_id}[{self.start!r}, {end}) gen {self.generation}"


class TilingError(ValueError):
    """Descriptors that leave a gap, overlap, or do not cover the whole key space."""


def check_tiling(descriptors: Iterable[RangeDescriptor]) -> None:
    """Raise :class:`TilingError` unless the descriptors tile ``[b"", +inf)`` exactly."""
    expected_start: bytes | None = b""
    ids: set[int] = set()
    for d in sorted(descriptors, key=lambda d: d.start):
        if d.range_id in ids:
            raise TilingError(f"range {d.range_id} appears twice")
        ids.add(d.range_id)
        if expected_start is None:
            raise TilingError(f"{d.describe()} lies past a range without an upper bound")
        if d.start != expected_start:
            kind = "gap" if d.start > expected_start else "overlap"
            raise TilingError(f"{kind} before {d.describe()}: expected start {expected_start!r}")
        if d.end is not None and d.end <= d.start:
            raise TilingError(f"{d.describe()} is empty")
        expected_start = d.end
    if expected_start is not None:
        raise TilingError(f"keys from {expected_start!r} up are not covered")


def range_at(by_start: Any, key: bytes) -> RangeDescriptor | None:
    """In a ``SortedDict`` of descriptors by start key, the last one starting at or before ``key``.

    It holds ``key`` when the descriptors tile the key space; otherwise check
    with :meth:`RangeDescriptor.contains`.
    """
    i: int = by_start.bisect_right(key) - 1
    if i < 0:
        return None
    desc: RangeDescriptor = by_start.peekitem(i)[1]
    return desc
