"""The linearizability checker on hand-made KV histories, with and without unknown outcomes."""

from __future__ import annotations

import pytest

from multiraft.testing.linearizability import (
    Operation,
    OpKind,
    check_history,
    check_key,
)

PUT, GET, DELETE = OpKind.PUT, OpKind.GET, OpKind.DELETE


def op(
    client: int,
    kind: OpKind,
    value: bytes | None,
    invoked: int,
    completed: int | None,
    key: bytes = b"k",
    space: int = 1,
) -> Operation:
    return Operation(client, space, key, kind, value, invoked, completed)


def test_sequential_put_then_get_of_that_value_is_linearizable() -> None:
    r = check_key([op(1, PUT, b"a", 1, 2), op(2, GET, b"a", 3, 4)])
    assert r.ok is True
    assert r.operations == 2


def test_get_of_the_initial_absence_before_any_put_is_linearizable() -> None:
    assert check_key([op(1, GET, None, 1, 2), op(2, PUT, b"a", 3, 4)]).ok is True


def test_stale_read_after_a_completed_overwrite_is_not_linearizable() -> None:
    ops = [
        op(1, PUT, b"a", 1, 2),
        op(1, PUT, b"b", 3, 4),
        op(2, GET, b"a", 5, 6),
    ]
    r = check_key(ops)
    assert r.ok is False
    assert r.stuck_on == ops[2]
    assert r.placed == 2
    assert r.value_then == b"b"
    assert "NOT linearizable" in r.describe()


def test_read_concurrent_with_a_put_may_see_either_value() -> None:
    for seen in (b"a", b"b"):
        ops = [op(1, PUT, b"a", 1, 2), op(1, PUT, b"b", 3, 6), op(2, GET, seen, 4, 5)]
        assert check_key(ops).ok is True, seen


def test_two_reads_in_real_time_order_cannot_see_two_completed_puts_in_both_orders() -> None:
    # Both puts finish before either read starts: the register holds one final value.
    ops = [
        op(1, PUT, b"a", 1, 4),
        op(2, PUT, b"b", 2, 3),
        op(3, GET, b"b", 5, 6),
        op(4, GET, b"a", 7, 8),
    ]
    assert check_key(ops).ok is False
    # Overlapping the puts with the first read makes the same values possible.
    ops[0] = op(1, PUT, b"a", 1, 6)
    assert check_key(ops).ok is True


def test_unknown_put_whose_value_is_read_took_effect_possibly_late() -> None:
    # The put of x timed out before y was written; a later read still sees x:
    # x took effect after y, which an unknown outcome allows.
    ops = [
        op(1, PUT, b"x", 1, None),
        op(2, PUT, b"y", 2, 3),
        op(3, GET, b"x", 4, 5),
    ]
    assert check_key(ops).ok is True


def test_unknown_put_cannot_be_read_before_it_was_invoked() -> None:
    ops = [op(3, GET, b"x", 1, 2), op(1, PUT, b"x", 3, None)]
    r = check_key(ops)
    assert r.ok is False
    assert r.stuck_on == ops[0]


def test_unknown_put_that_no_read_saw_may_never_have_happened() -> None:
    ops = [
        op(1, PUT, b"a", 1, 2),
        op(2, PUT, b"lost", 3, None),
        op(3, GET, b"a", 4, 5),
        op(3, GET, b"a", 6, 7),
    ]
    r = check_key(ops)
    assert r.ok is True
    assert r.operations == 4


def test_unknown_put_once_read_cannot_be_undone_by_nothing() -> None:
    # x was seen, then the old value again with no write in between: impossible.
    ops = [
        op(1, PUT, b"a", 1, 2),
        op(2, PUT, b"x", 3, None),
        op(3, GET, b"x", 4, 5),
        op(3, GET, b"a", 6, 7),
    ]
    assert check_key(ops).ok is False


def test_read_with_unknown_outcome_constrains_nothing() -> None:
    ops = [op(1, PUT, b"a", 1, 2), op(2, GET, b"never-written", 3, None)]
    assert check_key(ops).ok is True


def test_read_of_a_value_never_written_is_not_linearizable() -> None:
    r = check_key([op(1, PUT, b"a", 1, 2), op(2, GET, b"zzz", 3, 4)])
    assert r.ok is False
    assert r.placed == 1


def test_delete_makes_the_key_absent() -> None:
    ops = [op(1, PUT, b"a", 1, 2), op(1, DELETE, None, 3, 4), op(2, GET, None, 5, 6)]
    assert check_key(ops).ok is True
    ops[2] = op(2, GET, b"a", 5, 6)
    assert check_key(ops).ok is False


def test_operations_sharing_a_position_overlap() -> None:
    # The get is invoked at the very position the put completes: they overlap,
    # so the get may be ordered before the put and see the absence.
    ops = [op(1, PUT, b"a", 1, 3), op(2, GET, None, 3, 4)]
    assert check_key(ops).ok is True


def test_history_is_checked_per_key_and_space() -> None:
    ops = [
        op(1, PUT, b"a", 1, 2, key=b"k1"),
        op(1, PUT, b"b", 3, 4, key=b"k2"),
        op(2, GET, b"a", 5, 6, key=b"k1"),
        op(2, GET, None, 7, 8, key=b"k2"),  # stale: k2 holds b
        op(3, GET, None, 9, 10, key=b"k2", space=2),  # another space: untouched
    ]
    result = check_history(ops)
    assert [(k.space, k.key, k.ok) for k in result.keys] == [
        (1, b"k1", True),
        (1, b"k2", False),
        (2, b"k2", True),
    ]
    assert not result.ok
    assert result.operations == 5
    assert [(k.space, k.key) for k in result.failures()] == [(1, b"k2")]


def test_many_concurrent_writers_with_unknown_outcomes_stay_tractable() -> None:
    # 12 clients each write once, all overlapping, half with unknown outcomes,
    # then reads see the values of unknown writers in an order only some
    # linearizations allow: the memoized search settles it quickly.
    ops = [op(c, PUT, b"v%d" % c, c, 100 if c % 2 else None) for c in range(12)]
    ops += [op(20, GET, b"v1", 101, 102), op(21, GET, b"v4", 103, 104)]
    ok = check_key(ops)
    assert ok.ok is True
    assert ok.steps < 10_000
    # Reading v1 again after v4 needs v1 written twice: impossible.
    ops.append(op(22, GET, b"v1", 105, 106))
    assert check_key(ops).ok is False


def test_search_budget_exhaustion_is_inconclusive_not_a_verdict() -> None:
    ops = [op(c, PUT, b"v%d" % c, c, 100) for c in range(10)]
    ops.append(op(20, GET, b"missing", 101, 102))
    r = check_key(ops, step_budget=50)
    assert r.ok is None
    assert "inconclusive" in r.describe()
    assert check_key(ops).ok is False


def test_check_key_rejects_mixed_keys_and_inverted_intervals() -> None:
    with pytest.raises(ValueError, match="one key"):
        check_key([op(1, PUT, b"a", 1, 2, key=b"x"), op(1, PUT, b"a", 3, 4, key=b"y")])
    with pytest.raises(ValueError, match="completes before"):
        check_key([op(1, PUT, b"a", 5, 2)])
    with pytest.raises(ValueError, match="at least one"):
        check_key([])
