"""The inflights window: adding, freeing, and fullness by count and by bytes."""

from __future__ import annotations

import pytest

from multiraft.raft.inflights import Inflights


def test_window_fills_by_count_and_refuses_more() -> None:
    infl = Inflights(3)
    for index in (5, 7, 9):
        assert not infl.full()
        infl.add(index, 100)
    assert infl.count() == 3
    assert infl.bytes() == 300
    assert infl.full()
    with pytest.raises(RuntimeError):
        infl.add(10, 1)
    assert infl.count() == 3


def test_free_le_frees_every_append_at_or_below_the_index() -> None:
    infl = Inflights(10)
    for index in range(1, 8):
        infl.add(index, index)
    infl.free_le(4)
    assert infl.count() == 3
    assert infl.bytes() == 5 + 6 + 7
    infl.free_le(4)
    assert infl.count() == 3
    infl.free_le(7)
    assert infl.count() == 0
    assert infl.bytes() == 0


def test_free_le_between_indexes_frees_only_the_lower_ones() -> None:
    infl = Inflights(10)
    for index in (10, 20, 30):
        infl.add(index, 1)
    infl.free_le(25)
    assert infl.count() == 1
    infl.add(31, 1)
    infl.free_le(30)
    assert infl.count() == 1
    infl.free_le(31)
    assert infl.count() == 0


def test_free_le_below_the_oldest_is_a_no_op() -> None:
    infl = Inflights(4)
    infl.add(5, 10)
    infl.add(6, 10)
    infl.free_le(4)
    assert infl.count() == 2
    assert infl.bytes() == 20


def test_free_first_one_frees_only_the_oldest() -> None:
    infl = Inflights(3)
    infl.add(1, 10)
    infl.add(2, 20)
    infl.add(3, 30)
    infl.free_first_one()
    assert infl.count() == 2
    assert infl.bytes() == 50
    infl.free_le(2)
    assert infl.count() == 1
    assert infl.bytes() == 30


def test_free_first_one_on_empty_window_is_a_no_op() -> None:
    infl = Inflights(2)
    infl.free_first_one()
    assert infl.count() == 0
    assert infl.bytes() == 0


def test_heartbeat_response_frees_one_slot_when_window_full() -> None:
    infl = Inflights(2)
    infl.add(1, 1)
    infl.add(2, 1)
    assert infl.full()
    infl.free_first_one()
    assert not infl.full()
    infl.add(3, 1)
    assert infl.full()
    assert infl.count() == 2


def test_window_fills_by_bytes_before_count() -> None:
    infl = Inflights(10, max_bytes=100)
    infl.add(1, 60)
    assert not infl.full()
    infl.add(2, 39)
    assert not infl.full()
    infl.add(3, 1)
    assert infl.full()
    assert infl.count() == 3
    with pytest.raises(RuntimeError):
        infl.add(4, 1)
    infl.free_le(1)
    assert infl.bytes() == 40
    assert not infl.full()


def test_single_append_over_byte_limit_fills_window() -> None:
    infl = Inflights(10, max_bytes=100)
    infl.add(1, 500)
    assert infl.full()
    infl.free_le(1)
    assert not infl.full()


def test_zero_max_bytes_means_no_byte_limit() -> None:
    infl = Inflights(2, max_bytes=0)
    infl.add(1, 10**12)
    assert not infl.full()


def test_indexes_must_increase() -> None:
    infl = Inflights(4)
    infl.add(5, 1)
    with pytest.raises(RuntimeError):
        infl.add(5, 1)
    with pytest.raises(RuntimeError):
        infl.add(3, 1)
    assert infl.count() == 1


def test_reset_empties_the_window() -> None:
    infl = Inflights(2, max_bytes=10)
    infl.add(1, 5)
    infl.add(2, 5)
    infl.reset()
    assert infl.count() == 0
    assert infl.bytes() == 0
    assert not infl.full()
    infl.add(1, 5)
    assert infl.count() == 1


def test_clone_is_independent() -> None:
    infl = Inflights(3, max_bytes=50)
    infl.add(1, 10)
    infl.add(2, 10)
    copy = infl.clone()
    assert (copy.size, copy.max_bytes, copy.count(), copy.bytes()) == (3, 50, 2, 20)
    copy.free_le(2)
    assert infl.count() == 2
    infl.add(3, 10)
    assert copy.count() == 0
    assert infl.bytes() == 30


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        Inflights(0)
    with pytest.raises(ValueError):
        Inflights(1, max_bytes=-1)
