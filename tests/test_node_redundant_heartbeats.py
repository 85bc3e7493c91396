"""A group's heartbeat to a follower it sent an append in the previous interval stays home.

The append already restarted the follower's election timer and its answer told
the leader the follower is alive, so raft loses nothing; the heartbeats resume
one interval after the appends stop, and followers never campaign meanwhile.
"""

from __future__ import annotations

import pytest
import trio

from multiraft.config import NodeConfig
from multiraft.heartbeats import QUIESCE_CONTEXT, Outbox
from multiraft.raft import Message, MessageType
from node_cluster import Cluster

TICK = 0.1
_HB = MessageType.HEARTBEAT
_APP = MessageType.APP


def _heartbeat(to: int, context: bytes = b"") -> Message:
    return Message(type=_HB, to=to, from_=1, term=3, commit=5, context=context)


def _records_to(outbox: Outbox) -> dict[int, int]:
    return {to: len(f.heartbeats) for to, f in outbox.take().items()}


def test_a_heartbeat_after_an_append_in_the_previous_interval_is_skipped() -> None:
    outbox = Outbox(1, skips_heartbeats=True)
    outbox.add(7, Message(type=_APP, to=2, from_=1, term=3, index=5, commit=5))
    outbox.note_append(8, 3)  # an append that left early, outside the outbox
    outbox.take()
    # Within the same interval nothing is skipped yet: that is the ready cycle's job.
    outbox.add(7, _heartbeat(2))
    assert _records_to(outbox) == {2: 1}
    outbox.new_heartbeat_interval()
    outbox.add(7, _heartbeat(2))  # appended to in the previous interval: skipped
    outbox.add(7, _heartbeat(3))  # group 7 sent node 3 nothing: kept
    outbox.add(8, _heartbeat(3))  # group 8's early append: skipped
    outbox.add(8, _heartbeat(2))
    outbox.add(7, _heartbeat(2, b"read-ctx-16bytes"))  # a read request's: kept
    outbox.add(7, _heartbeat(2, QUIESCE_CONTEXT))  # a quiesce request: kept
    assert outbox.heartbeats_skipped == 2
    assert _records_to(outbox) == {2: 3, 3: 1}
    outbox.new_heartbeat_interval()
    outbox.add(7, _heartbeat(2))  # no append in the interval just ended
    outbox.add(8, _heartbeat(3))
    assert outbox.heartbeats_skipped == 2
    assert _records_to(outbox) == {2: 1, 3: 1}


def test_an_outbox_told_not_to_skip_sends_every_heartbeat() -> None:
    outbox = Outbox(1)
    outbox.add(7, Message(type=_APP, to=2, from_=1, term=3, index=5, commit=5))
    outbox.note_append(7, 3)
    outbox.new_heartbeat_interval()
    outbox.add(7, _heartbeat(2))
    outbox.add(7, _heartbeat(3))
    assert outbox.heartbeats_skipped == 0
    assert _records_to(outbox) == {2: 1, 3: 1}


async def _propose_every_tick(c: Cluster, n: int) -> None:
    """One command per tick, half a tick after each tick."""
    for k in range(n):
        await c.nodes[1].propose(1, b"c%d" % k)
        await trio.sleep(TICK)


async def test_steady_appends_replace_heartbeats_and_no_follower_campaigns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3, quiesce=False) as c:
        await c.create_groups([1], leader=lambda g: 1)
        await c.wait_leaders([1], timeout=10)
        await trio.sleep(3 * TICK + TICK / 2)
        net = c.net
        term = c.nodes[1].status(1).hard_state.term
        before = {d: net.heartbeat_records_sent(1, d) for d in (2, 3)}
        skipped = c.nodes[1].stats()["heartbeats_skipped"]
        n = 30
        await _propose_every_tick(c, n)
        # Every interval carried appends: the heartbeat of each of the n ticks stayed home.
        assert {d: net.heartbeat_records_sent(1, d) - before[d] for d in (2, 3)} == {2: 0, 3: 0}
        assert c.nodes[1].stats()["heartbeats_skipped"] - skipped == 2 * n
        # Three times the election timeout of appends alone: nobody campaigned.
        assert {c.nodes[i].status(1).hard_state.term for i in (1, 2, 3)} == {term}
        assert c.nodes[1].leader_of(1) == 1
        # The appends stop (the tick after the last one already went by): one heartbeat
        # per tick again.
        before = {d: net.heartbeat_records_sent(1, d) for d in (2, 3)}
        skipped = c.nodes[1].stats()["heartbeats_skipped"]
        await trio.sleep(10 * TICK)
        assert {d: net.heartbeat_records_sent(1, d) - before[d] for d in (2, 3)} == {2: 10, 3: 10}
        assert c.nodes[1].stats()["heartbeats_skipped"] == skipped
        assert {c.nodes[i].status(1).hard_state.term for i in (1, 2, 3)} == {term}


@pytest.mark.parametrize(
    "config",
    [
        {"skip_redundant_heartbeats": False},
        # Three heartbeat intervals would reach the election timeout: never skipped.
        {"election_ticks": 6, "heartbeat_ticks": 2},
    ],
)
async def test_heartbeats_are_all_sent_when_skipping_is_off_or_unsafe(
    autojump_clock: trio.testing.MockClock, config: dict[str, object]
) -> None:
    async with Cluster(3, quiesce=False, **config) as c:
        await c.create_groups([1], leader=lambda g: 1)
        await c.wait_leaders([1], timeout=10)
        await trio.sleep(6 * TICK + TICK / 2)
        net = c.net
        before = {d: net.heartbeat_records_sent(1, d) for d in (2, 3)}
        n = 12
        await _propose_every_tick(c, n)
        beats = n // NodeConfig(1, **config).heartbeat_ticks  # type: ignore[arg-type]
        assert {d: net.heartbeat_records_sent(1, d) - before[d] for d in (2, 3)} == {
            2: beats,
            3: beats,
        }
        assert c.nodes[1].stats()["heartbeats_skipped"] == 0


def test_skip_redundant_heartbeats_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="skip_redundant_heartbeats"):
        NodeConfig(1, skip_redundant_heartbeats=1)  # type: ignore[arg-type]


def test_a_followers_answer_agreeing_to_quiesce_stays_home_but_a_refusal_goes() -> None:
    outbox = Outbox(2)
    resp = MessageType.HEARTBEAT_RESP
    agree = Message(type=resp, to=1, from_=2, term=3, commit=5, context=QUIESCE_CONTEXT)
    outbox.add(7, agree, quiesced=True)
    assert outbox.heartbeats_skipped == 1
    outbox.add(7, agree, quiesced=False)  # answered awake: it refused
    outbox.add(8, Message(type=resp, to=1, from_=2, term=3, commit=5), quiesced=True)
    frames = outbox.take()
    assert [(r.group_id, r.context, r.quiesce) for r in frames[1].heartbeat_responses] == [
        (7, QUIESCE_CONTEXT, False),
        (8, b"", True),
    ]
    assert outbox.heartbeats_skipped == 1


async def test_a_group_quiesces_with_one_record_to_each_follower_and_none_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with Cluster(3) as c:
        await c.create_groups([1], leader=lambda g: 1)
        await c.wait_leaders([1], timeout=10)
        await c.settle([1])
        net = c.net
        before = {
            (s, d): net.heartbeat_records_sent(s, d) for s, d in ((1, 2), (1, 3), (2, 1), (3, 1))
        }
        await c.nodes[1].propose(1, b"x")
        await trio.sleep(5 * TICK)
        assert all(c.nodes[i].is_quiesced(1) for i in (1, 2, 3))
        sent = {k: net.heartbeat_records_sent(*k) - v for k, v in before.items()}
        # The tick after the append skipped its heartbeat; the next one asked each
        # follower to quiesce, and they agreed without a word.
        assert sent == {(1, 2): 1, (1, 3): 1, (2, 1): 0, (3, 1): 0}
