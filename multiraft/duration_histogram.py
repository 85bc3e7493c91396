"""A fixed-bucket histogram of durations, cheap enough to feed on every ready cycle.

Buckets double in width: bucket 0 holds durations under :data:`FIRST_BOUND_US`
microseconds, bucket ``k`` those under ``FIRST_BOUND_US << k``, and the last one
everything longer. Recording is an integer ``bit_length`` and one list
increment; no sample is kept. Quantiles are read as the upper bound of the
bucket that holds them, so a reported p99 is never below the true one and at
most twice it. Two snapshots subtract (:meth:`DurationHistogram.minus`) to give
the histogram of a window, which is how benchmarks read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["BUCKETS", "FIRST_BOUND_US", "DurationHistogram"]

#: Upper bound of the first bucket, in microseconds.
FIRST_BOUND_US = 64
#: Buckets, the last one unbounded: 64 µs, 128 µs ... 4.2 s, and longer.
BUCKETS = 18
_SHIFT = FIRST_BOUND_US.bit_length() - 1


class DurationHistogram:
    """Counts of durations per doubling bucket, with their count and total."""

    __slots__ = ("buckets", "count", "total_seconds")

    def __init__(self) -> None:
        #: Observations per bucket (see the module docstring for the bounds).
        self.buckets = [0] * BUCKETS
        #: Observations in all.
        self.count = 0
        #: Sum of the observed durations, in seconds.
        self.total_seconds = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration of ``seconds`` (negative ones count as zero)."""
        micros = int(seconds * 1_000_000)
        k = micros.bit_length() - _SHIFT if micros > 0 else 0
        self.buckets[0 if k < 0 else (k if k < BUCKETS else BUCKETS - 1)] += 1
        self.count += 1
        if seconds > 0:
            self.total_seconds += seconds

    @staticmethod
    def upper_bound(bucket: int) -> float:
        """Seconds below which every duration of ``bucket`` lies (``inf`` for the last)."""
        if not 0 <= bucket < BUCKETS:
            raise ValueError(f"bucket must be in [0, {BUCKETS}), got {bucket}")
        if bucket == BUCKETS - 1:
            return float("inf")
        return (FIRST_BOUND_US << bucket) / 1_000_000

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding the ``q`` quantile (0 when empty).

        Raises ``ValueError`` unless ``0 < q <= 1``.
        """
        if not 0 < q <= 1:
            raise ValueError(f"q must be in (0, 1], got {q}")
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for bucket, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return self.upper_bound(bucket)
        return self.upper_bound(BUCKETS - 1)

    def mean(self) -> float:
        """Mean duration in seconds (0 when empty)."""
        return self.total_seconds / self.count if self.count else 0.0

    def copy(self) -> DurationHistogram:
        """An independent copy (a snapshot to subtract later)."""
        out = DurationHistogram()
        out.buckets = list(self.buckets)
        out.count = self.count
        out.total_seconds = self.total_seconds
        return out

    def minus(self, earlier: DurationHistogram) -> DurationHistogram:
        """The observations made since the snapshot ``earlier`` of this histogram.

        Raises ``ValueError`` if ``earlier`` has a bucket with more observations
        (it is not an earlier snapshot of this histogram).
        """
        out = DurationHistogram()
        diff = [a - b for a, b in zip(self.buckets, earlier.buckets, strict=True)]
        if any(d < 0 for d in diff):
            raise ValueError("earlier is not an earlier snapshot of this histogram")
        out.buckets = diff
        out.count = self.count - earlier.count
        out.total_seconds = max(0.0, self.total_seconds - earlier.total_seconds)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A plain form (``count``, ``total_seconds``, ``buckets``) for JSON or msgpack."""
        return {
            "count": self.count,
            "total_seconds": self.total_seconds,
            "buckets": list(self.buckets),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DurationHistogram:
        """The histogram of :meth:`to_dict`'s form; ``ValueError`` names a bad field."""
        buckets = data.get("buckets")
        if (
            not isinstance(buckets, list)
            or len(buckets) != BUCKETS
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in buckets)
        ):
            raise ValueError(f"buckets must be a list of {BUCKETS} non-negative integers")
        count = data.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count != sum(buckets):
            raise ValueError("count must be an integer equal to the sum of the buckets")
        total = data.get("total_seconds")
        if isinstance(total, bool) or not isinstance(total, int | float) or total < 0:
            raise ValueError("total_seconds must be a non-negative number")
        out = cls()
        out.buckets = list(buckets)
        out.count = count
        out.total_seconds = float(total)
        return out

    def __repr__(self) -> str:
        return (
            f"DurationHistogram(count={self.count}, p50<={self.quantile(0.5) * 1e3:.3g} ms,"
            f" p99<={self.quantile(0.99) * 1e3:.3g} ms)"
            if self.count
            else "DurationHistogram(count=0)"
        )
