"""The holding buffer for messages of groups not created yet."""

from __future__ import annotations

from multiraft.raft.types import Message, MessageType
from multiraft.unknown_groups import UnknownGroups


def _msg(i: int) -> Message:
    return Message(type=MessageType.VOTE, from_=1, to=2, term=i)


def test_take_hands_over_a_groups_messages_in_arrival_order_and_forgets_them() -> None:
    u = UnknownGroups(max_groups=4, max_messages=2)
    for i in range(3):
        u.hold(7, _msg(i))
    u.hold(8, _msg(9))
    assert (len(u), u.buffered_messages, u.dropped) == (2, 3, 1)
    assert [m.term for m in u.take(7)] == [0, 1]
    assert (u.take(7), len(u), u.buffered_messages) == ([], 1, 1)


def test_the_buffer_emptied_after_a_burst_starts_over_with_a_fresh_table() -> None:
    u = UnknownGroups(max_groups=10_000, max_messages=1)
    for g in range(5_000):
        u.hold(g, _msg(g))
    burst_table = u._buffer
    for g in range(4_999):
        assert [m.term for m in u.take(g)] == [g]
    assert u._buffer is burst_table and len(u) == 1
    assert [m.term for m in u.take(4_999)] == [4_999]
    assert u._buffer is not burst_table and (len(u), u.buffered_messages) == (0, 0)
    # Taking from an empty buffer is a no-op and it still holds new messages.
    assert u.take(3) == []
    u.hold(3, _msg(3))
    assert [m.term for m in u.take(3)] == [3] and u.dropped == 0
