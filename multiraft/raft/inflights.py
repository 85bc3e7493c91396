"""The window of append messages in flight to one follower."""

from __future__ import annotations

from collections import deque

from multiraft.raft.interning import InternTable

__all__ = ["Inflights"]


class Inflights:
    """Sliding window over the last index (and byte size) of each in-flight append.

    The leader records an append with :meth:`add` as it sends it and frees the
    window up to the index a follower acknowledges. Sending stops while the
    window is :meth:`full`: by message count (``size``) or, when ``max_bytes``
    is non-zero, by total payload bytes.

    A window from :meth:`shared_empty` is one instance shared by every progress
    with the same limits that has nothing in flight (followers' views of their
    peers, idle leaders): it stays empty for good, :meth:`add` refuses it, and
    the progress swaps it for a private window before its first append.
    """

    __slots__ = ("_bytes", "_indexes", "_sizes", "is_shared", "max_bytes", "size")

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        if size <= 0:
            raise ValueError(f"inflights window size must be positive, got {size}")
        if max_bytes < 0:
            raise ValueError(f"inflights max_bytes must be >= 0, got {max_bytes}")
        self.size = size
        self.max_bytes = max_bytes
        # Two parallel deques instead of one of tuples: no tuple per append. They
        # exist only while appends are in flight: a node hosting thousands of idle
        # groups would otherwise keep two empty deques (a block each) per peer.
        self._indexes: deque[int] | None = None
        self._sizes: deque[int] | None = None
        self._bytes = 0
        self.is_shared = False

    @classmethod
    def shared_empty(cls, size: int, max_bytes: int = 0) -> Inflights:
        """The empty window shared by every progress with these limits (see the class)."""
        key = (size, max_bytes)
        w = _SHARED_WINDOWS.get(key)
        if w is None:
            w = cls(size, max_bytes)
            w.is_shared = True
            w = _SHARED_WINDOWS.add(key, w)
        return w

    def private(self) -> Inflights:
        """This window if it is private, else a new empty private one with its limits."""
        return Inflights(self.size, self.max_bytes) if self.is_shared else self

    def __repr__(self) -> str:
        return (
            f"Inflights(count={self.count()}/{self.size}, "
            f"bytes={self._bytes}/{self.max_bytes or 'inf'})"
        )

    def add(self, index: int, size_bytes: int) -> None:
        """Record an append whose last entry is ``index``.

        Raises RuntimeError if the window is full, shared, or ``index`` does not
        exceed the last recorded one: each is a bug in the caller.
        """
        indexes = self._indexes
        sizes = self._sizes
        if indexes is None or sizes is None:
            if self.is_shared:
                raise RuntimeError(f"cannot add index {index} to a shared window: {self!r}")
            indexes = self._indexes = deque()
            sizes = self._sizes = deque()
        elif self.full():
            raise RuntimeError(f"cannot add index {index} to a full inflights window: {self!r}")
        elif index <= indexes[-1]:
            raise RuntimeError(f"inflight index {index} not above the last one {indexes[-1]}")
        indexes.append(index)
        sizes.append(size_bytes)
        self._bytes += size_bytes

    def free_le(self, to: int) -> None:
        """Free every in-flight append whose index is <= ``to``."""
        indexes = self._indexes
        sizes = self._sizes
        if indexes is None or sizes is None or indexes[0] > to:
            return
        freed = 0
        while indexes and indexes[0] <= to:
            indexes.popleft()
            freed += sizes.popleft()
        self._bytes -= freed
        if not indexes:
            self._indexes = self._sizes = None

    def free_first_one(self) -> None:
        """Free the oldest in-flight append (no-op when empty)."""
        indexes = self._indexes
        sizes = self._sizes
        if indexes is not None and sizes is not None:
            indexes.popleft()
            self._bytes -= sizes.popleft()
            if not indexes:
                self._indexes = self._sizes = None

    def full(self) -> bool:
        """True when no more appends may be sent (count or byte limit reached)."""
        indexes = self._indexes
        if indexes is None:
            return False
        return len(indexes) >= self.size or (self.max_bytes > 0 and self._bytes >= self.max_bytes)

    def count(self) -> int:
        """Number of appends in flight."""
        return 0 if self._indexes is None else len(self._indexes)

    def bytes(self) -> int:
        """Total payload bytes in flight."""
        return self._bytes

    def reset(self) -> None:
        """Forget every in-flight append."""
        if self._indexes is not None:
            self._indexes = self._sizes = None
            self._bytes = 0

    def clone(self) -> Inflights:
        """An independent copy with the same limits and contents (a shared window is
        its own copy: it never holds anything)."""
        if self.is_shared:
            return self
        other = Inflights(self.size, self.max_bytes)
        if self._indexes is not None and self._sizes is not None:
            other._indexes = deque(self._indexes)
            other._sizes = deque(self._sizes)
        other._bytes = self._bytes
        return other


_SHARED_WINDOWS: InternTable[tuple[int, int], Inflights] = InternTable()
