"""DurationHistogram: doubling buckets from 64 µs, conservative quantiles, windows."""

from __future__ import annotations

import pytest

from multiraft.duration_histogram import BUCKETS, FIRST_BOUND_US, DurationHistogram


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0.0, 0),
        (-1.0, 0),
        (0.000_001, 0),
        (0.000_063, 0),
        (0.000_064, 1),
        (0.000_127, 1),
        (0.000_128, 2),
        (0.001, 4),  # 1,000 µs: [512, 1024)
        (0.001_024, 5),
        (4.0, 16),  # [2.1 s, 4.2 s)
        (4.2, 17),
        (3600.0, 17),
    ],
)
def test_a_duration_lands_in_the_bucket_that_bounds_it(seconds: float, bucket: int) -> None:
    h = DurationHistogram()
    h.observe(seconds)
    assert h.buckets == [1 if i == bucket else 0 for i in range(BUCKETS)]
    assert h.count == 1


def test_bucket_bounds_double_from_the_first_and_the_last_is_unbounded() -> None:
    assert FIRST_BOUND_US == 64
    assert DurationHistogram.upper_bound(0) == 0.000_064
    assert DurationHistogram.upper_bound(1) == 0.000_128
    assert DurationHistogram.upper_bound(4) == 0.001_024
    assert DurationHistogram.upper_bound(BUCKETS - 2) == (64 << 16) / 1e6
    assert DurationHistogram.upper_bound(BUCKETS - 1) == float("inf")
    with pytest.raises(ValueError, match="bucket"):
        DurationHistogram.upper_bound(BUCKETS)


def test_a_quantile_is_the_upper_bound_of_the_bucket_holding_its_rank() -> None:
    h = DurationHistogram()
    for _ in range(98):
        h.observe(0.000_3)  # bucket 3: [256, 512) µs
    h.observe(0.003)  # bucket 6: [2048, 4096) µs
    h.observe(0.020)  # bucket 9: [16.4, 32.8) ms
    assert h.count == 100
    assert h.quantile(0.5) == 0.000_512
    assert h.quantile(0.98) == 0.000_512
    assert h.quantile(0.99) == 0.004_096
    assert h.quantile(1.0) == 0.032_768
    assert h.total_seconds == pytest.approx(98 * 0.000_3 + 0.023)
    assert h.mean() == pytest.approx((98 * 0.000_3 + 0.023) / 100)


def test_an_empty_histogram_reads_zero_and_rejects_a_quantile_outside_0_1() -> None:
    h = DurationHistogram()
    assert (h.quantile(0.5), h.mean(), h.count) == (0.0, 0.0, 0)
    for q in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="q must be"):
            h.quantile(q)


def test_a_window_is_a_histogram_minus_its_earlier_snapshot() -> None:
    h = DurationHistogram()
    h.observe(0.000_1)
    h.observe(0.01)
    snap = h.copy()
    h.observe(0.000_1)
    h.observe(0.000_1)
    window = h.minus(snap)
    assert window.count == 2
    assert window.buckets[1] == 2 and sum(window.buckets) == 2
    assert window.total_seconds == pytest.approx(0.000_2)
    # The snapshot is independent of later observations.
    assert snap.count == 2 and snap.buckets[1] == 1
    with pytest.raises(ValueError, match="earlier snapshot"):
        snap.minus(h)


def test_the_plain_form_round_trips_and_bad_fields_are_named() -> None:
    h = DurationHistogram()
    h.observe(0.002)
    h.observe(0.5)
    back = DurationHistogram.from_dict(h.to_dict())
    assert (back.buckets, back.count, back.total_seconds) == (h.buckets, 2, h.total_seconds)
    good = h.to_dict()
    with pytest.raises(ValueError, match="buckets"):
        DurationHistogram.from_dict({**good, "buckets": [1] * (BUCKETS - 1)})
    with pytest.raises(ValueError, match="buckets"):
        DurationHistogram.from_dict({**good, "buckets": [-1] + [0] * (BUCKETS - 1)})
    with pytest.raises(ValueError, match="count"):
        DurationHistogram.from_dict({**good, "count": 3})
    with pytest.raises(ValueError, match="total_seconds"):
        DurationHistogram.from_dict({**good, "total_seconds": -1.0})
